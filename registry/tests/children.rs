//! Child registries at their parent, over loopback: a child authenticates with its own key
//! and is refused until the operator allows it; an allowed child is welcomed with its name
//! and the parent's place in the hierarchy; a key that is the parent's own or one of its
//! ancestors' is never a child (a loop), whatever the operator allowed; denying refuses it
//! again; allowing and denying are operators' actions, audited, and kept across a restart.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use courier_protocol::{AdminAction, ErrorKind, VendorKey};

fn setup(dir: &std::path::Path) -> Setup {
    let mut s = config(dir);
    s.registry.operators = vec![VendorKey::of(&key(9))];
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_children_the_operator_allowed_are_welcome_and_never_an_ancestor() {
    let dir = tempfile::tempdir().unwrap();
    let h = start(setup(dir.path())).await;
    // The parent's own key, and the root above it.
    let (own, root) = (VendorKey::of(&key(20)), VendorKey::of(&key(21)));
    h.registry().place_in_hierarchy(own, vec![root]);
    let child_key = key(5);
    let child = vendor(&h, &child_key).await;
    assert_eq!(
        kind(child.child_hello().await.unwrap_err()),
        ErrorKind::Forbidden
    );
    // Not authenticated: refused as such.
    assert_eq!(
        kind(client(&h).await.child_hello().await.unwrap_err()),
        ErrorKind::NotAuthenticated
    );

    let operator = vendor(&h, &key(9)).await;
    let allow = AdminAction::AllowChild {
        key: VendorKey::of(&child_key),
        name: "site-a".into(),
    };
    operator.admin(allow).await.unwrap();
    let welcome = child.child_hello().await.unwrap();
    assert_eq!(welcome.name, "site-a");
    assert_eq!(welcome.ancestors, vec![own, root]);
    let listed = operator.children().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, VendorKey::of(&child_key));
    assert!(listed[0].last_seen_ms.is_some());
    // Only operators list them.
    assert_eq!(
        kind(child.children().await.unwrap_err()),
        ErrorKind::Forbidden
    );
    // A bad name is refused with a type; denying a key never allowed too.
    let bad = AdminAction::AllowChild {
        key: VendorKey::of(&key(6)),
        name: String::new(),
    };
    assert_eq!(
        kind(operator.admin(bad).await.unwrap_err()),
        ErrorKind::BadQuery
    );
    let unknown = AdminAction::DenyChild {
        key: VendorKey::of(&key(6)),
    };
    assert_eq!(
        kind(operator.admin(unknown).await.unwrap_err()),
        ErrorKind::NotFound
    );

    // The root, allowed as a child of its own descendant: a loop, refused.
    let root_key = key(21);
    operator
        .admin(AdminAction::AllowChild {
            key: VendorKey::of(&root_key),
            name: "loop".into(),
        })
        .await
        .unwrap();
    let looping = vendor(&h, &root_key).await;
    let refused = looping.child_hello().await.unwrap_err();
    assert!(refused.to_string().contains("loop"), "{refused}");

    // A restart keeps the allowed children (last hellos are this run's only).
    child.close();
    operator.close();
    h.shutdown().await;
    let h = start(setup(dir.path())).await;
    h.registry().place_in_hierarchy(own, vec![root]);
    let operator = vendor(&h, &key(9)).await;
    let listed = operator.children().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"site-a") && names.contains(&"loop"));
    assert!(listed.iter().all(|c| c.last_seen_ms.is_none()));
    let child = vendor(&h, &child_key).await;
    child.child_hello().await.unwrap();

    // Denied: refused again. Both actions are in the audit log.
    operator
        .admin(AdminAction::DenyChild {
            key: VendorKey::of(&child_key),
        })
        .await
        .unwrap();
    assert_eq!(
        kind(child.child_hello().await.unwrap_err()),
        ErrorKind::Forbidden
    );
    let audit = operator.audit(1).await.unwrap();
    let actions: Vec<String> = audit.iter().map(|e| e.action.to_string()).collect();
    assert!(
        actions.iter().any(|a| a.starts_with("allow child site-a")),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| a.starts_with("deny child")),
        "{actions:?}"
    );
    child.close();
    operator.close();
    h.shutdown().await;
    // The denial is durable too.
    let h = start(setup(dir.path())).await;
    let operator = vendor(&h, &key(9)).await;
    let names: Vec<String> = operator
        .children()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["loop".to_string()]);
    operator.close();
    h.shutdown().await;
}
