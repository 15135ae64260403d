//! Hostile components built in the test, for what the Rust guests in `proxies/` cannot
//! express: `table.grow` and pathological code for the compiler. Each is a hand-written
//! core module exporting the canonical-ABI `say` of `courier:echo/echo@0.1.0`
//! (`func(message: string) -> result<string, string>`, core type `(i32, i32) -> i32`, the
//! result returned through a pointer), with `memory` and a bump `cabi_realloc`, turned into
//! a component by `wit-component`.

use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, DataSection, ExportKind, ExportSection, Function,
    FunctionSection, GlobalSection, GlobalType, HeapType, MemorySection, MemoryType, Module,
    RefType, TableSection, TableType, TypeSection, ValType,
};

/// The interface every builder here exports.
const ECHO_WIT: &str = include_str!("../../../wit/echo/echo.wit");

/// Where `say`'s answer lies in memory: the `result<string, string>` (discriminant byte,
/// pointer, length), then the text. A `say` body returns this address.
pub const ANSWER: i32 = 0;

/// Index of `say`'s core function type, for [`Function`]s built by callers.
const SAY_TYPE: u32 = 0;
const REALLOC_TYPE: u32 = 1;

/// A component exporting `courier:echo/echo@0.1.0` whose `say` runs `say` (which must
/// leave [`ANSWER`] on the stack) and answers `ok(answer)`. `table`, if any, is table 0.
pub fn echo_component(answer: &str, table: Option<TableType>, say: &Function) -> Vec<u8> {
    echo_component_with(answer, table, say, &[])
}

/// Like [`echo_component`], with `extra` functions of `say`'s type after it.
pub fn echo_component_with(
    answer: &str,
    table: Option<TableType>,
    say: &Function,
    extra: &[Function],
) -> Vec<u8> {
    let mut types = TypeSection::new();
    types
        .ty()
        .function([ValType::I32, ValType::I32], [ValType::I32]);
    types.ty().function([ValType::I32; 4], [ValType::I32]);

    let mut functions = FunctionSection::new();
    functions.function(REALLOC_TYPE).function(SAY_TYPE);
    for _ in extra {
        functions.function(SAY_TYPE);
    }

    let mut tables = TableSection::new();
    if let Some(t) = table {
        tables.table(t);
    }

    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });

    // The bump pointer of `cabi_realloc`, above the answer.
    let mut globals = GlobalSection::new();
    globals.global(
        GlobalType {
            val_type: ValType::I32,
            mutable: true,
            shared: false,
        },
        &ConstExpr::i32_const(1024),
    );

    let mut exports = ExportSection::new();
    exports
        .export("memory", ExportKind::Memory, 0)
        .export("cabi_realloc", ExportKind::Func, 0)
        .export("courier:echo/echo@0.1.0#say", ExportKind::Func, 1);

    // cabi_realloc(old, old_size, align, new_size): never frees, 8-aligned.
    let mut realloc = Function::new([]);
    realloc
        .instructions()
        .global_get(0)
        .global_get(0)
        .local_get(3)
        .i32_add()
        .i32_const(7)
        .i32_add()
        .i32_const(-8)
        .i32_and()
        .global_set(0)
        .end();
    let mut code = CodeSection::new();
    code.function(&realloc).function(say);
    for f in extra {
        code.function(f);
    }

    let text = 16u32;
    assert!(answer.len() <= 1000, "answer must fit below the heap");
    let mut area = vec![0u8; text as usize];
    area[4..8].copy_from_slice(&text.to_le_bytes());
    area[8..12].copy_from_slice(&(answer.len() as u32).to_le_bytes());
    area.extend_from_slice(answer.as_bytes());
    let mut data = DataSection::new();
    data.active(0, &ConstExpr::i32_const(ANSWER), area);

    let mut module = Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&tables)
        .section(&memories)
        .section(&globals)
        .section(&exports)
        .section(&code)
        .section(&data);
    componentize(module.finish())
}

/// Embeds the echo world in `module` and encodes it as a component.
fn componentize(mut module: Vec<u8>) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    resolve.push_str("echo.wit", ECHO_WIT).unwrap();
    let pkg = resolve
        .push_str(
            "hostile.wit",
            "package courier:hostile;\nworld hostile {\n  export courier:echo/echo@0.1.0;\n}\n",
        )
        .unwrap();
    let world = resolve.select_world(&[pkg], Some("hostile")).unwrap();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

/// A funcref table of `minimum` elements, at most `maximum`.
pub fn funcref_table(minimum: u64, maximum: Option<u64>) -> TableType {
    TableType {
        element_type: RefType::FUNCREF,
        table64: false,
        minimum,
        maximum,
        shared: false,
    }
}

/// `say` grows its table by `step` null elements in an endless loop, never looking at the
/// result: left alone, it would spin until the CPU deadline once growth is refused.
pub fn table_grower(step: i32) -> Vec<u8> {
    let mut say = Function::new([]);
    say.instructions()
        .loop_(BlockType::Empty)
        .ref_null(HeapType::FUNC)
        .i32_const(step)
        .table_grow(0)
        .drop()
        .br(0)
        .end()
        .i32_const(ANSWER)
        .end();
    echo_component("never", Some(funcref_table(1, None)), &say)
}

/// `say` grows a table declared with a maximum of `maximum` one element at a time until
/// `table.grow` answers -1, then answers `ok("table full")`: a guest's own limit, not the
/// host's cap.
pub fn table_filler(maximum: u64) -> Vec<u8> {
    let mut say = Function::new([]);
    say.instructions()
        .loop_(BlockType::Empty)
        .ref_null(HeapType::FUNC)
        .i32_const(1)
        .table_grow(0)
        .i32_const(-1)
        .i32_ne()
        .br_if(0)
        .end()
        .i32_const(ANSWER)
        .end();
    echo_component("table full", Some(funcref_table(1, Some(maximum))), &say)
}

/// A compile bomb that is valid and runs: `say` declares `locals` i32 locals and nests
/// `depth` blocks; the innermost one adds up every local (keeping them all live) and leaves
/// through a `br_table` with a target for every enclosing block, selected by the message
/// length. It answers `ok("defused")`.
pub fn compile_bomb(depth: u32, locals: u32, copies: u32) -> Vec<u8> {
    // Local 0 and 1 are the parameters (pointer and length of the message).
    let mut say = Function::new([(locals, ValType::I32)]);
    let mut body = say.instructions();
    for _ in 0..depth {
        body.block(BlockType::Empty);
    }
    body.i32_const(0);
    for l in 2..2 + locals {
        body.local_get(l).i32_add();
    }
    body.drop();
    body.local_get(1).br_table(0..depth, depth - 1);
    for _ in 0..depth {
        body.end();
    }
    body.i32_const(ANSWER).end();
    let extra: Vec<Function> = (1..copies).map(|_| say.clone()).collect();
    echo_component_with("defused", None, &say, &extra)
}
