//! Fuzz target `client_vm`: components generated from wasm-smith modules, fed to the client
//! sandbox's check, compile, instantiate and invoke path under its real limit machinery
//! (`StoreLimits` memory cap, epoch CPU deadline, wall deadline, output cap), with small
//! limit values so that every input runs quickly.
//!
//! The input chooses the compiler (Winch or Cranelift), the signature of the function
//! `fuzz:vm/run@0.1.0.run` (scalar parameters; no result, a scalar, or a `list<u8>` or
//! `string` read from guest memory), a few wasm features, and the arguments; wasm-smith then
//! generates a core module exporting `run` (and `memory` when the result needs it) with
//! arbitrary code, which is wrapped in a component whose function lifts that export.
//!
//! Oracle: the host never panics and never hangs (a run ends within its wall limit plus
//! slack); a component the decoder reads is compiled or refused with a typed error; a run
//! that succeeds stayed within its CPU time, its output cap and its memory cap (no memory
//! it declares is larger); a run that fails is a typed error caused by the guest, never a
//! host failure; no store outlives its run.

use arbitrary::{Arbitrary, Result, Unstructured};
use courier_client::{
    CallSpec, CompileError, CompilerChoice, Invocation, Limits, Policy, ProviderTarget, RunError,
    Sandbox, SandboxConfig, values_size,
};
use courier_protocol::{InspectError, SpkiPin};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use wasm_encoder::{
    Alias, CanonicalFunctionSection, CanonicalOption, CodeSection, Component,
    ComponentAliasSection, ComponentExportKind, ComponentExportSection, ComponentInstanceSection,
    ComponentSectionId, ComponentTypeSection, ComponentValType, ExportKind, ExportSection,
    Function, FunctionSection, InstanceSection, Instruction, MemorySection, MemoryType, Module,
    PrimitiveValType, RawSection, TypeSection, ValType,
};

/// The interface the wrapper component exports.
pub const INTERFACE: &str = "fuzz:vm/run@0.1.0";

/// The limits every fuzz run is held to: the sandbox's real mechanisms, small values.
pub fn limits() -> Limits {
    Limits {
        memory_bytes: 16 << 20,
        table_elements: 10_000,
        cpu_time: Duration::from_millis(100),
        wall_time: Duration::from_secs(1),
        output_bytes: 4 << 10,
        ..Limits::default()
    }
}

/// How much later than its wall limit a run may end before it counts as a hang (the
/// deadline is checked on epoch ticks, and the machine may be busy).
const HANG_SLACK: Duration = Duration::from_secs(5);
/// How much longer than its CPU time a successful run may take (epoch granularity and a
/// busy machine).
const CPU_SLACK: Duration = Duration::from_secs(2);

/// A scalar parameter or result type and its core type.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Scalar {
    /// `bool` (i32).
    Bool,
    /// `u8` (i32).
    U8,
    /// `s16` (i32).
    S16,
    /// `u32` (i32).
    U32,
    /// `s32` (i32).
    S32,
    /// `char` (i32, validated when lifted).
    Char,
    /// `s64` (i64).
    S64,
    /// `u64` (i64).
    U64,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
}

impl Scalar {
    fn component(self) -> PrimitiveValType {
        match self {
            Scalar::Bool => PrimitiveValType::Bool,
            Scalar::U8 => PrimitiveValType::U8,
            Scalar::S16 => PrimitiveValType::S16,
            Scalar::U32 => PrimitiveValType::U32,
            Scalar::S32 => PrimitiveValType::S32,
            Scalar::Char => PrimitiveValType::Char,
            Scalar::S64 => PrimitiveValType::S64,
            Scalar::U64 => PrimitiveValType::U64,
            Scalar::F32 => PrimitiveValType::F32,
            Scalar::F64 => PrimitiveValType::F64,
        }
    }

    fn core(self) -> ValType {
        match self {
            Scalar::S64 | Scalar::U64 => ValType::I64,
            Scalar::F32 => ValType::F32,
            Scalar::F64 => ValType::F64,
            _ => ValType::I32,
        }
    }

    /// A WAVE literal of this type drawn from the input.
    fn wave(self, u: &mut Unstructured<'_>) -> Result<String> {
        Ok(match self {
            Scalar::Bool => bool::arbitrary(u)?.to_string(),
            Scalar::U8 => u8::arbitrary(u)?.to_string(),
            Scalar::S16 => i16::arbitrary(u)?.to_string(),
            Scalar::U32 => u32::arbitrary(u)?.to_string(),
            Scalar::S32 => i32::arbitrary(u)?.to_string(),
            Scalar::Char => {
                let c = char::arbitrary(u)?;
                format!("'{}'", c.escape_default())
            }
            Scalar::S64 => i64::arbitrary(u)?.to_string(),
            Scalar::U64 => u64::arbitrary(u)?.to_string(),
            Scalar::F32 => float(f64::from(f32::arbitrary(u)?), |x| format!("{:?}", x as f32)),
            Scalar::F64 => float(f64::arbitrary(u)?, |x| format!("{x:?}")),
        })
    }
}

fn float(x: f64, finite: impl Fn(f64) -> String) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        finite(x)
    }
}

/// What `run` returns.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Returns {
    /// Nothing.
    Nothing,
    /// One scalar.
    Scalar(Scalar),
    /// `list<u8>`, read from guest memory through a return pointer.
    Bytes,
    /// `string`, read (and validated) from guest memory through a return pointer.
    Text,
}

impl Returns {
    fn needs_memory(self) -> bool {
        matches!(self, Returns::Bytes | Returns::Text)
    }

    fn core(self) -> Option<ValType> {
        match self {
            Returns::Nothing => None,
            Returns::Scalar(s) => Some(s.core()),
            Returns::Bytes | Returns::Text => Some(ValType::I32),
        }
    }
}

/// The shape of one case, drawn from the input before the module.
#[derive(Debug, Clone, Arbitrary)]
pub struct Shape {
    /// Compile with Cranelift instead of Winch.
    pub cranelift: bool,
    /// Parameter types (at most 6 are used).
    pub params: Vec<Scalar>,
    /// Result.
    pub returns: Returns,
    /// Let wasm-smith use SIMD.
    pub simd: bool,
    /// Let wasm-smith use tail calls.
    pub tail_calls: bool,
    /// Let wasm-smith use bulk memory.
    pub bulk_memory: bool,
    /// Largest memory wasm-smith may declare, in 64 KiB pages (modulo 512: up to twice
    /// the cap).
    pub max_pages: u16,
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    if let Ok(case) = Case::generate(&mut u) {
        check(&case);
    }
}

/// How a case ended (for figures; the oracle has already passed when one is returned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ended {
    /// wasmtime refused to compile or link it.
    Refused,
    /// The run returned.
    Returned,
    /// The run trapped (stack overflow included).
    Trapped,
    /// The CPU or wall deadline stopped it.
    Deadline,
    /// The memory cap stopped it.
    MemoryCap,
    /// The answer was over the output cap.
    OutputCap,
    /// Instantiation failed.
    NotInstantiated,
}

/// One generated case: the component and the call.
#[derive(Debug)]
pub struct Case {
    /// Which compiler.
    pub compiler: CompilerChoice,
    /// The wrapped component.
    pub component: Vec<u8>,
    /// The core module inside it.
    pub module: Vec<u8>,
    /// The WAVE argument list.
    pub args: String,
}

impl Case {
    /// Draws a case from the input.
    pub fn generate(u: &mut Unstructured<'_>) -> Result<Self> {
        let shape = Shape::arbitrary(u)?;
        let params: Vec<Scalar> = shape.params.iter().copied().take(6).collect();
        let config = wasm_smith::Config {
            exports: Some(example_module(&params, shape.returns)),
            max_imports: 0,
            // The sandbox's pool gives a core instance one memory: the required `memory`
            // export is that one when there is one.
            max_memories: if shape.returns.needs_memory() { 0 } else { 1 },
            max_tables: 1,
            max_memory32_bytes: (u64::from(shape.max_pages % 512) + 1) << 16,
            memory64_enabled: false,
            threads_enabled: false,
            shared_everything_threads_enabled: false,
            gc_enabled: false,
            exceptions_enabled: false,
            custom_page_sizes_enabled: false,
            wide_arithmetic_enabled: false,
            simd_enabled: shape.simd,
            relaxed_simd_enabled: false,
            tail_call_enabled: shape.tail_calls,
            bulk_memory_enabled: shape.bulk_memory,
            // wasmtime is built without its `gc` feature: `externref` cannot compile.
            reference_types_enabled: false,
            max_funcs: 20,
            max_instructions: 200,
            ..wasm_smith::Config::default()
        };
        let module = wasm_smith::Module::new(config, u)?.to_bytes();
        let mut args = Vec::with_capacity(params.len());
        for p in &params {
            args.push(p.wave(u)?);
        }
        Ok(Case {
            compiler: if shape.cranelift {
                CompilerChoice::Cranelift
            } else {
                CompilerChoice::Winch
            },
            component: wrap(&module, &params, shape.returns),
            module,
            args: format!("({})", args.join(", ")),
        })
    }
}

/// The module whose exports wasm-smith must reproduce: `run` of the core signature, and
/// `memory` when the result is read from memory.
fn example_module(params: &[Scalar], returns: Returns) -> Vec<u8> {
    let mut m = Module::new();
    let mut types = TypeSection::new();
    types
        .ty()
        .function(params.iter().map(|p| p.core()), returns.core());
    m.section(&types);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    m.section(&funcs);
    if returns.needs_memory() {
        let mut mem = MemorySection::new();
        mem.memory(MemoryType {
            minimum: 1,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        m.section(&mem);
    }
    let mut exports = ExportSection::new();
    exports.export("run", ExportKind::Func, 0);
    if returns.needs_memory() {
        exports.export("memory", ExportKind::Memory, 0);
    }
    m.section(&exports);
    let mut code = CodeSection::new();
    let mut body = Function::new([]);
    body.instruction(&Instruction::Unreachable);
    body.instruction(&Instruction::End);
    code.function(&body);
    m.section(&code);
    m.finish()
}

/// A component that instantiates `module` and exports `fuzz:vm/run@0.1.0` with the
/// function `run` lifted from the module's export.
pub fn wrap(module: &[u8], params: &[Scalar], returns: Returns) -> Vec<u8> {
    let mut c = Component::new();
    c.section(&RawSection {
        id: ComponentSectionId::CoreModule.into(),
        data: module,
    });
    let mut instances = InstanceSection::new();
    instances.instantiate(0, Vec::<(&str, wasm_encoder::ModuleArg)>::new());
    c.section(&instances);
    let mut aliases = ComponentAliasSection::new();
    aliases.alias(Alias::CoreInstanceExport {
        instance: 0,
        kind: ExportKind::Func,
        name: "run",
    });
    if returns.needs_memory() {
        aliases.alias(Alias::CoreInstanceExport {
            instance: 0,
            kind: ExportKind::Memory,
            name: "memory",
        });
    }
    c.section(&aliases);

    let mut types = ComponentTypeSection::new();
    let mut next_type = 0;
    let result = match returns {
        Returns::Nothing => None,
        Returns::Scalar(s) => Some(ComponentValType::Primitive(s.component())),
        Returns::Text => Some(ComponentValType::Primitive(PrimitiveValType::String)),
        Returns::Bytes => {
            types.defined_type().list(PrimitiveValType::U8);
            next_type += 1;
            Some(ComponentValType::Type(next_type - 1))
        }
    };
    let names: Vec<String> = (0..params.len()).map(|i| format!("p{i}")).collect();
    types
        .function()
        .params(
            names
                .iter()
                .zip(params)
                .map(|(n, p)| (n.as_str(), ComponentValType::Primitive(p.component()))),
        )
        .result(result);
    let func_type = next_type;
    c.section(&types);

    let mut canon = CanonicalFunctionSection::new();
    let options: Vec<CanonicalOption> = if returns.needs_memory() {
        vec![CanonicalOption::UTF8, CanonicalOption::Memory(0)]
    } else {
        Vec::new()
    };
    canon.lift(0, func_type, options);
    c.section(&canon);

    let mut inst = ComponentInstanceSection::new();
    inst.export_items([("run", ComponentExportKind::Func, 0)]);
    c.section(&inst);
    let mut exports = ComponentExportSection::new();
    exports.export(INTERFACE, ComponentExportKind::Instance, 0, None);
    c.section(&exports);
    c.finish()
}

struct Vm {
    runtime: tokio::runtime::Runtime,
    winch: Sandbox,
    cranelift: Sandbox,
}

fn vm() -> &'static Vm {
    static VM: OnceLock<Vm> = OnceLock::new();
    VM.get_or_init(|| {
        let policy = Policy {
            limits: limits(),
            ..Policy::default()
        };
        let sandbox = |compiler| {
            let config = SandboxConfig {
                compiler,
                max_concurrent_runs: 1,
                cache_compiled: false,
                ..SandboxConfig::default()
            };
            Sandbox::with_facts(policy.clone(), config, Default::default())
                .expect("the fuzz sandbox builds")
        };
        Vm {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime"),
            winch: sandbox(CompilerChoice::Winch),
            cranelift: sandbox(CompilerChoice::Cranelift),
        }
    })
}

/// The largest initial size any memory of `module` declares, in bytes.
fn declared_memory(module: &[u8]) -> u64 {
    let mut largest = 0;
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let Ok(wasmparser::Payload::MemorySection(reader)) = payload {
            for mem in reader.into_iter().flatten() {
                largest = largest.max(mem.initial.saturating_mul(1 << 16));
            }
        }
    }
    largest
}

/// Checks, compiles, instantiates and calls one case, and holds the outcome to the oracle.
pub fn check(case: &Case) -> Ended {
    let vm = vm();
    let sandbox = match case.compiler {
        CompilerChoice::Winch => &vm.winch,
        CompilerChoice::Cranelift => &vm.cranelift,
    };
    let limits = limits();
    match sandbox.inspect_within_policy(&case.component) {
        Ok(found) => assert!(
            found.export(INTERFACE).is_some(),
            "the wrapper's export was not read: {found:?}"
        ),
        Err(CompileError::Inspect(InspectError::Invalid(e))) => {
            assert_ne!(e, "decoder panicked", "the component decoder panicked");
            // wasm-smith and the wrapper make valid components: the decoder must read them.
            panic!("a valid generated component was refused by the decoder: {e}");
        }
        Err(e) => panic!("check refused a generated component: {e}"),
    }
    let ended = vm.runtime.block_on(async {
        let compiled = match sandbox.compile(Arc::from(&case.component[..])).await {
            Ok((compiled, _)) => compiled,
            // wasmtime refuses what its compiler does not support: a typed refusal.
            Err(CompileError::Compile(_) | CompileError::Link(_)) => return Ended::Refused,
            Err(e) => panic!("compile failed on the host side: {e}"),
        };
        let spec = CallSpec::new(
            INTERFACE.parse().expect("the fuzz interface name parses"),
            "run",
            &case.args,
        );
        let invocation = match Invocation::prepare(
            compiled.component(),
            &compiled.interfaces().exports,
            &spec,
        ) {
            Ok(i) => i,
            Err(e) => panic!("the call {spec} could not be prepared: {e}"),
        };
        let target = ProviderTarget {
            endpoints: Vec::new(),
            pin: SpkiPin([0; 32]),
        };
        let started = Instant::now();
        let outcome = sandbox.run(&compiled, target, &invocation).await;
        let took = started.elapsed();
        assert!(
            took <= limits.wall_time + HANG_SLACK,
            "a run took {took:?}, beyond its wall limit of {:?}",
            limits.wall_time
        );
        match outcome {
            Ok(out) => {
                assert!(
                    out.timings.instantiate + out.timings.invoke <= limits.cpu_time + CPU_SLACK,
                    "a run succeeded after {:?}, beyond its CPU time",
                    out.timings
                );
                let size = values_size(&out.values, usize::MAX);
                assert!(
                    size <= limits.output_bytes,
                    "an answer of {size} bytes passed the cap of {}",
                    limits.output_bytes
                );
                let declared = declared_memory(&case.module);
                assert!(
                    declared <= limits.memory_bytes as u64,
                    "a run with {declared} bytes of memory passed the cap"
                );
                Ended::Returned
            }
            Err(failure) => match failure.error {
                RunError::Trap { .. } | RunError::StackOverflow => Ended::Trapped,
                RunError::CpuDeadline { .. } | RunError::WallDeadline { .. } => Ended::Deadline,
                RunError::MemoryLimit { .. } => Ended::MemoryCap,
                RunError::OutputTooLarge { .. } => Ended::OutputCap,
                RunError::Instantiate(_) => Ended::NotInstantiated,
                other => panic!("a run failed in a way the guest cannot cause: {other}"),
            },
        }
    });
    assert_eq!(sandbox.live_stores(), 0, "a store outlived its run");
    ended
}
