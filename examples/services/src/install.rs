//! The provider side of self-installing prerequisites: a service that says what it needs
//! on the client (`needs`) and, when it is an installer, what it installs (`plan`), in the
//! messages of [`courier_install_api`]. It also answers `say` like the echo service, so that
//! the `echo-needs` proxy can call it once its prerequisites are in place.
//!
//! [`InstallService::from_dir`] reads one from a catalog directory (see [`dir`]); the
//! examples are under `examples/install-catalog/`.

pub mod dir;

use std::sync::Arc;

use courier_install_api::{Need, Needs, Plan, encode, methods};
use courier_provider::{HandlerResult, ServiceBuilder};

pub use dir::{INSTALL_FILE, InstallDirError, parse_need};

/// The error `plan` answers when the service installs nothing.
pub const INSTALLS_NOTHING: &str = "this provider installs nothing";

/// A service with prerequisites, and an installer when it has a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallService {
    /// What the service needs on the client (its `needs` answer).
    pub needs: Vec<Need>,
    /// What it installs (its `plan` answer); `None` for a service that installs nothing.
    pub plan: Option<Plan>,
}

impl InstallService {
    /// The service: `say` (answers `echo: <message>`), `needs` and `plan` (both take an
    /// empty payload; `plan` answers [`INSTALLS_NOTHING`] as its error without a plan).
    pub fn service(self) -> ServiceBuilder {
        let needs: Arc<[u8]> = encode(&Needs { needs: self.needs }).into();
        let plan: Result<Arc<[u8]>, &'static str> = match self.plan {
            Some(plan) => Ok(encode(&plan).into()),
            None => Err(INSTALLS_NOTHING),
        };
        ServiceBuilder::new()
            .method("say", |payload: Vec<u8>| async move { say(payload) })
            .method(methods::NEEDS, move |_payload: Vec<u8>| {
                let needs = Arc::clone(&needs);
                async move { Ok(needs.to_vec()) }
            })
            .method(methods::PLAN, move |_payload: Vec<u8>| {
                let plan = plan.clone();
                async move { answer_plan(plan) }
            })
    }

    /// The proxy component that calls this service: `installer` when it has a plan, else
    /// `echo-needs`.
    pub fn proxy(&self) -> &'static [u8] {
        if self.plan.is_some() {
            courier_proxy_artifacts::INSTALLER
        } else {
            courier_proxy_artifacts::ECHO_NEEDS
        }
    }
}

/// `say`: `"echo: " + message`.
fn say(payload: Vec<u8>) -> HandlerResult {
    let message = String::from_utf8(payload).map_err(|_| "message is not UTF-8".to_string())?;
    Ok(format!("echo: {message}").into_bytes())
}

/// `plan`: the encoded plan, or why there is none.
fn answer_plan(plan: Result<Arc<[u8]>, &'static str>) -> HandlerResult {
    plan.map(|bytes| bytes.to_vec())
        .map_err(|message| message.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use courier_install_api::{File, decode};

    fn plan() -> Plan {
        Plan {
            provides: "acme:fonts/glyphs".into(),
            version: "1.4.0".into(),
            files: vec![File {
                path: "share/glyphs.txt".into(),
                contents: b"abc".to_vec(),
            }],
        }
    }

    #[test]
    fn say_echoes_and_plan_answers_or_refuses() {
        assert_eq!(say(b"hi".to_vec()).unwrap(), b"echo: hi");
        assert!(say(vec![0xff]).is_err());
        let bytes: Arc<[u8]> = encode(&plan()).into();
        let answered = answer_plan(Ok(bytes)).unwrap();
        assert_eq!(decode::<Plan>("plan", &answered).unwrap(), plan());
        assert_eq!(
            answer_plan(Err(INSTALLS_NOTHING)).unwrap_err(),
            INSTALLS_NOTHING
        );
    }

    #[test]
    fn the_service_has_its_methods_and_its_proxy() {
        let greeter = InstallService {
            needs: vec![Need::Package("zlib1g".into())],
            plan: None,
        };
        assert_eq!(greeter.proxy(), courier_proxy_artifacts::ECHO_NEEDS);
        let names: Vec<String> = greeter
            .service()
            .method_names()
            .map(str::to_owned)
            .collect();
        assert_eq!(names, ["needs", "plan", "say"]);
        let installer = InstallService {
            needs: Vec::new(),
            plan: Some(plan()),
        };
        assert_eq!(installer.proxy(), courier_proxy_artifacts::INSTALLER);
    }
}
