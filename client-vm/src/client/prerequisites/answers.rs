//! Reading what a predicate or an installer answered: the values of
//! `result<list<requirement>, string>` and of `result<string, string>`, checked, as the
//! client's own types. A malformed answer is an error, never a guess.

use super::Requirement;
use crate::host::printable;
use wasmtime::component::Val;

/// The most requirements one predicate may answer.
pub const MAX_REQUIREMENTS: usize = 64;

/// The requirements in a `missing` answer, or why there are none to read.
pub fn requirements(values: &[Val]) -> Result<Vec<Requirement>, String> {
    let list = match values {
        [Val::Result(Ok(Some(list)))] => list.as_ref(),
        [Val::Result(Err(Some(e)))] => return Err(format!("it could not tell: {}", text(e))),
        _ => return Err("it answered something other than a list of requirements".into()),
    };
    let Val::List(items) = list else {
        return Err("it answered something other than a list of requirements".into());
    };
    if items.len() > MAX_REQUIREMENTS {
        return Err(format!(
            "it answered {} requirements, over the cap of {MAX_REQUIREMENTS}",
            items.len()
        ));
    }
    items.iter().map(requirement).collect()
}

fn requirement(item: &Val) -> Result<Requirement, String> {
    match item {
        Val::Variant(case, Some(payload)) if case == "service" => {
            let Val::Record(fields) = payload.as_ref() else {
                return Err("a service requirement that is not a record".into());
            };
            let field = |name: &str| {
                fields.iter().find_map(|(n, v)| match v {
                    Val::String(s) if n == name => Some(s.clone()),
                    _ => None,
                })
            };
            let (Some(interface), Some(version)) = (field("interface"), field("version")) else {
                return Err("a service requirement without an interface and a version".into());
            };
            Requirement::service(interface, version)
        }
        Val::Variant(case, Some(payload)) if case == "package" => match payload.as_ref() {
            Val::String(name) => Requirement::package(name.clone()),
            _ => Err("a package requirement that is not a name".into()),
        },
        _ => Err("a requirement that is neither a service nor a package".into()),
    }
}

/// The line a `result<string, string>` carries: its `ok` as `Ok`, its `err` as `Err`.
pub fn string_result(values: &[Val]) -> Result<String, String> {
    match values {
        [Val::Result(Ok(Some(v)))] => Ok(text(v)),
        [Val::Result(Err(Some(v)))] => Err(text(v)),
        _ => Err("it answered something other than a line".into()),
    }
}

/// A string value, made printable and clipped; anything else described.
fn text(v: &Val) -> String {
    match v {
        Val::String(s) => printable(&s.chars().take(512).collect::<String>()),
        _ => "(not text)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: Val) -> Vec<Val> {
        vec![Val::Result(Ok(Some(Box::new(v))))]
    }

    fn service(interface: &str, version: &str) -> Val {
        Val::Variant(
            "service".into(),
            Some(Box::new(Val::Record(vec![
                ("interface".into(), Val::String(interface.into())),
                ("version".into(), Val::String(version.into())),
            ]))),
        )
    }

    #[test]
    fn well_formed_answers_are_read() {
        let values = ok(Val::List(vec![
            service("acme:fonts/glyphs", "^1"),
            Val::Variant(
                "package".into(),
                Some(Box::new(Val::String("zlib1g".into()))),
            ),
        ]));
        assert_eq!(
            requirements(&values).unwrap(),
            vec![
                Requirement::Service {
                    interface: "acme:fonts/glyphs".into(),
                    version: "^1".into()
                },
                Requirement::Package("zlib1g".into())
            ]
        );
        assert_eq!(requirements(&ok(Val::List(vec![]))).unwrap(), vec![]);
    }

    #[test]
    fn malformed_answers_are_errors() {
        let err = vec![Val::Result(Err(Some(Box::new(Val::String(
            "no\x1b[2J".into(),
        )))))];
        assert!(requirements(&err).unwrap_err().contains("could not tell"));
        assert!(requirements(&[Val::Bool(true)]).is_err());
        for bad in [
            service("acme:fonts/glyphs@1.0.0", "^1"),
            service("not an interface", "^1"),
            service("acme:fonts/glyphs", "one"),
            Val::Variant("package".into(), Some(Box::new(Val::String("-rf".into())))),
            Val::Variant("other".into(), None),
        ] {
            assert!(
                requirements(&ok(Val::List(vec![bad.clone()]))).is_err(),
                "{bad:?}"
            );
        }
        let many = ok(Val::List(vec![service("a:b/c", "*"); MAX_REQUIREMENTS + 1]));
        assert!(requirements(&many).unwrap_err().contains("over the cap"));
        assert_eq!(
            string_result(&ok(Val::String("done".into()))),
            Ok("done".into())
        );
        assert!(string_result(&[]).is_err());
    }
}
