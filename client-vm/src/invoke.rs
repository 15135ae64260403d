//! Generic dynamic invocation: `courier:echo/echo.say("hi")` → the export looked up by
//! interface and function name, arguments parsed in WAVE against the function's parameter
//! types, results printed in WAVE. No generated code is needed to call any proxy.
//!
//! Rust applications that know the interface can use typed calls instead
//! ([`crate::Sandbox::run_typed`], [`crate::Client::call_typed`]).

use courier_protocol::{InterfaceName, InterfaceRef};
use std::fmt;
use std::str::FromStr;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::wasm_wave::untyped::UntypedFuncCall;
use wasmtime::component::{Component, ComponentExportIndex, Type, Val, wasm_wave};

/// A parsed call: `namespace:package/interface[@version].function(args...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSpec {
    /// The interface, version optional.
    pub interface: InterfaceName,
    /// The function name.
    pub function: String,
    /// The WAVE argument list, parentheses included: `("hi")`.
    pub args: String,
}

/// Why a call could not be prepared or its answer printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The text is not `interface.function(args)`.
    #[error("call {0:?} is not of the form namespace:package/interface[@version].function(args)")]
    Syntax(String),
    /// The interface part is not an interface name.
    #[error("bad interface in call: {0}")]
    Interface(String),
    /// The component does not export the interface.
    #[error("the component does not export {0}")]
    NoInterface(String),
    /// The interface has no such function.
    #[error("{interface} has no function {function:?}")]
    NoFunction {
        /// The exported interface (with version).
        interface: String,
        /// The function asked for.
        function: String,
    },
    /// The export is not a plain function (e.g. a resource constructor).
    #[error("{0} is not a function")]
    NotAFunction(String),
    /// The arguments do not parse against the parameter types.
    #[error("bad arguments for {function}: {message}")]
    Arguments {
        /// The function.
        function: String,
        /// The WAVE parser's message.
        message: String,
    },
    /// A result could not be printed in WAVE.
    #[error("result cannot be printed in WAVE: {0}")]
    Print(String),
}

impl FromStr for CallSpec {
    type Err = InvokeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let syntax = || InvokeError::Syntax(s.chars().take(120).collect());
        let open = s.find('(').ok_or_else(syntax)?;
        if !s.ends_with(')') {
            return Err(syntax());
        }
        let (path, args) = s.split_at(open);
        // The function is after the last dot; a version may contain dots itself.
        let dot = path.rfind('.').ok_or_else(syntax)?;
        let (interface, function) = (&path[..dot], &path[dot + 1..]);
        if function.is_empty()
            || !function
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(syntax());
        }
        let interface: InterfaceName =
            interface
                .parse()
                .map_err(|e: courier_protocol::InterfaceNameError| {
                    InvokeError::Interface(e.to_string())
                })?;
        Ok(Self {
            interface,
            function: function.to_string(),
            args: args.to_string(),
        })
    }
}

impl fmt::Display for CallSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}{}", self.interface, self.function, self.args)
    }
}

impl CallSpec {
    /// Builds a call from its parts; `args` is a WAVE argument list such as `("hi")`.
    pub fn new(interface: InterfaceName, function: &str, args: &str) -> Self {
        let args = args.trim();
        let args = if args.starts_with('(') {
            args.to_string()
        } else {
            format!("({args})")
        };
        Self {
            interface,
            function: function.to_string(),
            args,
        }
    }

    /// Whether `exported` (a full interface name with version) satisfies this call's
    /// interface: same name, and the same version if one was asked for (or a
    /// semver-compatible newer one).
    pub fn matches_export(&self, exported: &str) -> bool {
        let Ok(e) = InterfaceRef::parse(exported) else {
            return false;
        };
        if !self.interface.is_path(e.path()) {
            return false;
        }
        match (&self.interface.version, e.version()) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(want), Some(have)) => {
                semver::VersionReq::parse(&format!("^{want}")).is_ok_and(|req| req.matches(have))
            }
        }
    }
}

/// A call resolved against one compiled component: the function's export index, its
/// parameter values and result types.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The exported interface, with its version.
    pub interface: String,
    /// The function.
    pub function: String,
    pub(crate) func: ComponentExportIndex,
    /// Parameter values, parsed from WAVE.
    pub params: Vec<Val>,
    pub(crate) results: usize,
}

impl Invocation {
    /// Resolves `spec` against a compiled component: finds the exported interface matching
    /// it and the function in it, and parses the arguments against the function's
    /// parameter types.
    pub fn prepare(
        component: &Component,
        exports: &[courier_protocol::Export],
        spec: &CallSpec,
    ) -> Result<Self, InvokeError> {
        let (func, interface, params, results) = lookup(component, exports, spec)?;
        let source = format!("{}{}", spec.function, spec.args);
        let untyped = UntypedFuncCall::parse(&source).map_err(|e| InvokeError::Arguments {
            function: spec.function.clone(),
            message: e.to_string(),
        })?;
        let params: Vec<Val> =
            untyped
                .to_wasm_params::<Val>(params.iter())
                .map_err(|e| InvokeError::Arguments {
                    function: spec.function.clone(),
                    message: e.to_string(),
                })?;
        Ok(Self {
            interface,
            function: spec.function.clone(),
            func,
            params,
            results,
        })
    }

    /// `interface.function`, as reported to the registry.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.interface, self.function)
    }
}

/// Finds the function export for `spec`: its index, exported interface name, parameter
/// and result count.
pub(crate) fn lookup(
    component: &Component,
    exports: &[courier_protocol::Export],
    spec: &CallSpec,
) -> Result<(ComponentExportIndex, String, Vec<Type>, usize), InvokeError> {
    let interface = exports
        .iter()
        .map(|e| e.interface.as_str())
        .find(|e| spec.matches_export(e))
        .ok_or_else(|| InvokeError::NoInterface(spec.interface.to_string()))?
        .to_string();
    let (_, iface_index) = component
        .get_export(None, &interface)
        .ok_or_else(|| InvokeError::NoInterface(interface.clone()))?;
    let no_function = || InvokeError::NoFunction {
        interface: interface.clone(),
        function: spec.function.clone(),
    };
    let (item, func) = component
        .get_export(Some(&iface_index), &spec.function)
        .ok_or_else(no_function)?;
    let ComponentItem::ComponentFunc(ty) = item else {
        return Err(InvokeError::NotAFunction(format!(
            "{interface}.{}",
            spec.function
        )));
    };
    let params: Vec<Type> = ty.params().map(|(_, t)| t).collect();
    let results = ty.results().len();
    Ok((func, interface, params, results))
}

/// What a proxy answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The function returned normally (for a `result`, its `ok` case). WAVE text of the
    /// whole result (`ok("echo: hi")`), or of the values for other result types.
    Ok(String),
    /// The function returned the `err` case of its `result`: the proxy's own error, not a
    /// host failure. WAVE text of the whole result (`err("...")`).
    ProxyError(String),
}

impl Answer {
    /// The WAVE text.
    pub fn text(&self) -> &str {
        match self {
            Answer::Ok(s) | Answer::ProxyError(s) => s,
        }
    }

    /// Whether the proxy reported success.
    pub fn is_ok(&self) -> bool {
        matches!(self, Answer::Ok(_))
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// Prints results in WAVE and tells a proxy's own error apart: a single `result` value in
/// its `err` case is [`Answer::ProxyError`].
pub fn answer(values: &[Val]) -> Result<Answer, InvokeError> {
    let texts = values
        .iter()
        .map(|v| wasm_wave::to_string(v).map_err(|e| InvokeError::Print(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let text = match texts.len() {
        1 => texts.into_iter().next().unwrap_or_default(),
        _ => format!("({})", texts.join(", ")),
    };
    match values {
        [Val::Result(Err(_))] => Ok(Answer::ProxyError(text)),
        _ => Ok(Answer::Ok(text)),
    }
}

/// Approximate size in bytes of values copied out of a proxy, stopping early once it
/// exceeds `cap` (the caller only needs to know that it did).
pub fn values_size(values: &[Val], cap: usize) -> usize {
    let mut total = 0usize;
    let mut stack: Vec<&Val> = values.iter().collect();
    while let Some(v) = stack.pop() {
        if total > cap {
            break;
        }
        total = total.saturating_add(match v {
            Val::String(s) => s.len(),
            Val::Bool(_) | Val::S8(_) | Val::U8(_) => 1,
            Val::S16(_) | Val::U16(_) => 2,
            Val::S32(_) | Val::U32(_) | Val::Float32(_) | Val::Char(_) => 4,
            Val::S64(_) | Val::U64(_) | Val::Float64(_) => 8,
            Val::Enum(s) => s.len(),
            Val::Flags(f) => f.iter().map(String::len).sum(),
            _ => 4,
        });
        match v {
            Val::List(items) | Val::Tuple(items) => stack.extend(items.iter()),
            Val::Record(fields) => {
                for (name, val) in fields {
                    total = total.saturating_add(name.len());
                    stack.push(val);
                }
            }
            Val::Variant(name, payload) => {
                total = total.saturating_add(name.len());
                if let Some(p) = payload {
                    stack.push(p);
                }
            }
            Val::Option(Some(p)) => stack.push(p),
            Val::Result(Ok(Some(p)) | Err(Some(p))) => stack.push(p),
            _ => {}
        }
    }
    total
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_calls() {
        let c: CallSpec = r#"courier:echo/echo.say("hi")"#.parse().unwrap();
        assert_eq!(c.interface.to_string(), "courier:echo/echo");
        assert_eq!(c.function, "say");
        assert_eq!(c.args, r#"("hi")"#);
        let c: CallSpec = r#"courier:echo/echo@0.1.0.say("a.b(c)")"#.parse().unwrap();
        assert_eq!(c.interface.version, Some(semver::Version::new(0, 1, 0)));
        assert_eq!(c.function, "say");
        assert_eq!(c.args, r#"("a.b(c)")"#);
        let c: CallSpec = "courier:kv/store.keys()".parse().unwrap();
        assert_eq!(c.function, "keys");
        assert_eq!(c.to_string(), "courier:kv/store.keys()");
        for bad in [
            "say(\"hi\")",
            "courier:echo/echo.say",
            "courier:echo/echo.(1)",
            "x.y(1)",
        ] {
            assert!(bad.parse::<CallSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn matches_versions() {
        let c: CallSpec = "courier:echo/echo@0.1.0.say(\"x\")".parse().unwrap();
        assert!(c.matches_export("courier:echo/echo@0.1.0"));
        assert!(c.matches_export("courier:echo/echo@0.1.3"));
        assert!(!c.matches_export("courier:echo/echo@0.2.0"));
        assert!(!c.matches_export("courier:kv/store@0.1.0"));
        let c: CallSpec = "courier:echo/echo.say(\"x\")".parse().unwrap();
        assert!(c.matches_export("courier:echo/echo@7.0.0"));
    }

    #[test]
    fn answers_and_sizes() {
        let ok = [Val::Result(Ok(Some(Box::new(Val::String(
            "echo: hi".into(),
        )))))];
        assert_eq!(answer(&ok).unwrap(), Answer::Ok("ok(\"echo: hi\")".into()));
        let err = [Val::Result(Err(Some(Box::new(Val::String("no".into())))))];
        assert_eq!(
            answer(&err).unwrap(),
            Answer::ProxyError("err(\"no\")".into())
        );
        assert_eq!(answer(&[]).unwrap(), Answer::Ok("()".into()));
        assert_eq!(values_size(&ok, 1000), 12);
        let big = [Val::List(vec![Val::String("x".repeat(100)); 100])];
        assert!(values_size(&big, 50) > 50);
        assert!(values_size(&big, usize::MAX) >= 10_000);
    }
}
