//! Principals, tokens, role definitions and role assignments: every refusal by its code, the
//! last-Owner guard, the access version and the activity log.

use time::OffsetDateTime;

use ajar_domain::access::builtin::{CONTRIBUTOR_ID, OWNER_ID, READER_ID};
use ajar_domain::access::{RoleAssignment, RoleDefinition, RoleKind, Scope, builtin_roles};
use ajar_domain::activity::{ActivityQuery, Audit, Outcome, actions as a};
use ajar_store::{
    AssignmentFilter, NewPrincipal, NewToken, OidcLink, Principal, PrincipalKind, PutOutcome, Store, StoreError, StoreResult, TokenPurpose,
};

use crate::{ADMIN_TOKEN, Place, SUB, fresh};

const OTHER_SUB: &str = "5b1c4a0e-6a0e-4d8e-9a53-0d3f1f6b1e22";
const CUSTOM_ID: &str = "0f4b5b0e-9b0e-4a57-9d6b-0f0c7a1f2b3c";

fn audit(operation: &'static str) -> Audit {
    Audit {
        operation,
        subscription: None,
        resource_group: None,
        resource_id: "/providers/Ajar/identity".into(),
        caller: "tester".into(),
        caller_addr: None,
        subjects: Vec::new(),
        details: Vec::new(),
    }
}

async fn admin(store: &dyn Store) -> Principal {
    store.principal_for_token(ADMIN_TOKEN, TokenPurpose::Api).await.unwrap().unwrap()
}

fn code<T: std::fmt::Debug>(r: StoreResult<T>) -> &'static str {
    match r {
        Err(StoreError::Rejected(p)) => p.code.as_str(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn user(name: &str) -> NewPrincipal {
    NewPrincipal { name: name.into(), kind: PrincipalKind::User, oidc: None }
}

fn token(principal_id: &str, hash: u8, name: &str) -> NewToken {
    NewToken { principal_id: principal_id.into(), hash: [hash; 32], name: name.into(), expires: None }
}

fn scope(s: &str) -> Scope {
    s.parse().unwrap()
}

fn assignment(id: &str, principal_id: &str, role_id: &str, at: &str) -> RoleAssignment {
    RoleAssignment { id: id.into(), principal_id: principal_id.into(), role_id: role_id.into(), scope: scope(at) }
}

/// A GUID for test assignment `n`.
fn guid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

fn custom_role(id: &str, name: &str, scopes: &[&str]) -> RoleDefinition {
    RoleDefinition {
        id: id.into(),
        name: name.into(),
        description: "operates JIT".into(),
        kind: RoleKind::Custom,
        actions: vec![a::JIT_READ.into(), a::JIT_INITIATE.into()],
        not_actions: vec![],
        assignable_scopes: scopes.iter().map(|s| scope(s)).collect(),
    }
}

pub async fn bootstrap_makes_the_admin_owner_at_the_root(place: &dyn Place) {
    let store = fresh(place).await;
    let admin = admin(&*store).await;
    assert_eq!((admin.name.as_str(), admin.kind), ("admin", PrincipalKind::User));
    let snapshot = store.access_snapshot().await.unwrap();
    assert_eq!(snapshot.version, store.access_version());
    assert_eq!(snapshot.roles, builtin_roles());
    assert_eq!(snapshot.assignments.len(), 1);
    let owner = &snapshot.assignments[0];
    assert_eq!((owner.principal_id.as_str(), owner.role_id.as_str(), owner.scope.is_root()), (admin.id.as_str(), OWNER_ID, true));
    let tokens = store.list_tokens(None).await.unwrap();
    let purposes: Vec<_> = tokens.iter().map(|t| (t.name.as_str(), t.purpose)).collect();
    assert_eq!(purposes, [("bootstrap api", TokenPurpose::Api), ("bootstrap join", TokenPurpose::Join)]);
    assert!(tokens.iter().all(|t| t.id.starts_with("tok_") && t.revoked.is_none() && t.expires.is_none()));
}

pub async fn principals_are_created_listed_found_and_deleted(place: &dyn Place) {
    let store = fresh(place).await;
    let alice = store
        .create_principal(
            NewPrincipal {
                name: "alice".into(),
                kind: PrincipalKind::User,
                oidc: Some(OidcLink { issuer: "https://idp.example".into(), subject: "a-123".into() }),
            },
            audit(a::PRINCIPALS_WRITE),
        )
        .await
        .unwrap();
    let robot =
        store.create_principal(NewPrincipal { kind: PrincipalKind::Service, ..user("robot") }, audit(a::PRINCIPALS_WRITE)).await.unwrap();
    let refusals: Vec<(NewPrincipal, &str)> = vec![
        (user(""), "InvalidPrincipal"),
        (user("   "), "InvalidPrincipal"),
        (user(" padded"), "InvalidPrincipal"),
        (user("tab\there"), "InvalidPrincipal"),
        (user(&"x".repeat(129)), "InvalidPrincipal"),
        (user("alice"), "PrincipalExists"),
        (user("ALICE"), "PrincipalExists"),
        (user("Admin"), "PrincipalExists"),
        (
            NewPrincipal { oidc: Some(OidcLink { issuer: "https://idp.example".into(), subject: "a-123".into() }), ..user("alice again") },
            "PrincipalExists",
        ),
        (NewPrincipal { oidc: Some(OidcLink { issuer: "".into(), subject: "s".into() }), ..user("no issuer") }, "InvalidPrincipal"),
    ];
    for (new, expected) in refusals {
        let name = new.name.clone();
        assert_eq!(code(store.create_principal(new, audit(a::PRINCIPALS_WRITE)).await), expected, "{name:?}");
    }
    assert!(store.create_principal(user(&"é".repeat(128)), audit(a::PRINCIPALS_WRITE)).await.is_ok(), "128 characters, not bytes");

    assert_eq!(store.principal_for_oidc("https://idp.example", "a-123").await.unwrap(), Some(alice.clone()));
    assert_eq!(store.principal_for_oidc("https://idp.example", "A-123").await.unwrap(), None, "subjects are exact");
    assert_eq!(store.principal_for_oidc("https://other.example", "a-123").await.unwrap(), None);
    let info = store.get_principal(&alice.id).await.unwrap().unwrap();
    assert_eq!(info.principal, alice);
    assert_eq!(info.oidc.as_ref().map(|l| l.subject.as_str()), Some("a-123"));
    assert_eq!(info.live_tokens, 0);
    assert_eq!(store.get_principal(&robot.id).await.unwrap().unwrap().principal.kind, PrincipalKind::Service);
    let names: Vec<String> = store.list_principals().await.unwrap().into_iter().map(|p| p.principal.name).collect();
    assert_eq!(names[..4], ["admin", "agent-enrolment", "alice", "robot"]);

    assert!(store.delete_principal(&robot.id, audit(a::PRINCIPALS_DELETE)).await.unwrap());
    assert!(!store.delete_principal(&robot.id, audit(a::PRINCIPALS_DELETE)).await.unwrap());
    assert_eq!(store.get_principal(&robot.id).await.unwrap(), None);
    // The name is free again.
    store.create_principal(user("robot"), audit(a::PRINCIPALS_WRITE)).await.unwrap();
}

pub async fn tokens_are_created_listed_revoked_and_expire(place: &dyn Place) {
    let store = fresh(place).await;
    let bob = store.create_principal(user("bob"), audit(a::PRINCIPALS_WRITE)).await.unwrap();
    let laptop = store.create_token(token(&bob.id, 10, "laptop"), audit(a::PRINCIPAL_TOKENS_WRITE)).await.unwrap();
    assert!(laptop.id.starts_with("tok_"));
    assert_eq!((laptop.principal_id.as_str(), laptop.name.as_str(), laptop.purpose), (bob.id.as_str(), "laptop", TokenPurpose::Api));
    assert_eq!((laptop.expires, laptop.revoked), (None, None));
    assert_eq!(store.principal_for_token([10; 32], TokenPurpose::Api).await.unwrap(), Some(bob.clone()));
    assert_eq!(store.principal_for_token([10; 32], TokenPurpose::Join).await.unwrap(), None, "purposes do not mix");

    let soon = OffsetDateTime::now_utc() + time::Duration::milliseconds(400);
    let ci =
        store.create_token(NewToken { expires: Some(soon), ..token(&bob.id, 11, "ci") }, audit(a::PRINCIPAL_TOKENS_WRITE)).await.unwrap();
    assert!(ci.expires.is_some());
    assert_eq!(store.list_tokens(Some(&bob.id)).await.unwrap(), [laptop.clone(), ci.clone()]);
    assert_eq!(store.list_tokens(None).await.unwrap().len(), 4);
    assert_eq!(store.get_principal(&bob.id).await.unwrap().unwrap().live_tokens, 2);

    let refusals: Vec<(NewToken, &str)> = vec![
        (token(&bob.id, 12, ""), "InvalidToken"),
        (token(&bob.id, 12, "line\nbreak"), "InvalidToken"),
        (token(&bob.id, 12, &"t".repeat(129)), "InvalidToken"),
        (NewToken { expires: Some(OffsetDateTime::now_utc() - time::Duration::seconds(1)), ..token(&bob.id, 12, "old") }, "InvalidToken"),
        (token("no-such-principal", 12, "ghost"), "PrincipalNotFound"),
        (token(&bob.id, 10, "same secret"), "Conflict"),
    ];
    for (new, expected) in refusals {
        let name = new.name.clone();
        assert_eq!(code(store.create_token(new, audit(a::PRINCIPAL_TOKENS_WRITE)).await), expected, "{name:?}");
    }

    // Revoked: refused at once, and revoking again keeps the first time.
    let revoked = store.revoke_token(&laptop.id, audit(a::PRINCIPAL_TOKENS_DELETE)).await.unwrap().unwrap();
    assert_eq!(revoked.principal_id, bob.id);
    let at = revoked.revoked.expect("revoked");
    assert_eq!(store.principal_for_token([10; 32], TokenPurpose::Api).await.unwrap(), None);
    let again = store.revoke_token(&laptop.id, audit(a::PRINCIPAL_TOKENS_DELETE)).await.unwrap().unwrap();
    assert_eq!(again.revoked, Some(at));
    assert_eq!(store.revoke_token("tok_missing", audit(a::PRINCIPAL_TOKENS_DELETE)).await.unwrap(), None);

    // Expired: refused once its time has passed.
    assert_eq!(store.principal_for_token([11; 32], TokenPurpose::Api).await.unwrap(), Some(bob.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(store.principal_for_token([11; 32], TokenPurpose::Api).await.unwrap(), None);
    assert_eq!(store.get_principal(&bob.id).await.unwrap().unwrap().live_tokens, 0);
    // Both are still listed, with their state.
    let listed = store.list_tokens(Some(&bob.id)).await.unwrap();
    assert_eq!(listed.iter().map(|t| t.revoked.is_some()).collect::<Vec<_>>(), [true, false]);
}

pub async fn custom_role_definitions_are_put_listed_and_deleted(place: &dyn Place) {
    let store = fresh(place).await;
    let role = custom_role(CUSTOM_ID, "JIT operator", &["/"]);
    assert_eq!(store.put_role_definition(role.clone(), audit(a::ROLE_DEFINITIONS_WRITE)).await.unwrap(), PutOutcome::Created);
    let changed =
        RoleDefinition { description: "changed".into(), assignable_scopes: vec![scope(&format!("/subscriptions/{SUB}"))], ..role };
    assert_eq!(store.put_role_definition(changed.clone(), audit(a::ROLE_DEFINITIONS_WRITE)).await.unwrap(), PutOutcome::Updated);
    for id in [CUSTOM_ID.to_uppercase(), format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{CUSTOM_ID}")] {
        assert_eq!(store.get_role_definition(&id).await.unwrap(), Some(changed.clone()), "{id}");
    }
    assert_eq!(store.get_role_definition(READER_ID).await.unwrap().unwrap().name, "Reader");
    assert_eq!(store.get_role_definition("3daf09fb-cea9-4548-957a-9955c9ee6410").await.unwrap(), None);
    let second = custom_role("1a2b3c4d-0000-4000-8000-000000000001", "Another", &["/"]);
    store.put_role_definition(second.clone(), audit(a::ROLE_DEFINITIONS_WRITE)).await.unwrap();
    let listed = store.list_role_definitions().await.unwrap();
    let mut expected = builtin_roles();
    expected.extend([second.clone(), changed.clone()]);
    assert_eq!(listed, expected, "built-ins first, then custom roles by name");

    let refusals: Vec<(RoleDefinition, &str)> = vec![
        (custom_role(OWNER_ID, "Mine", &["/"]), "InvalidRoleDefinition"),
        (custom_role("2a2b3c4d-0000-4000-8000-000000000002", "contributor", &["/"]), "InvalidRoleDefinition"),
        (
            RoleDefinition { kind: RoleKind::BuiltIn, ..custom_role("2a2b3c4d-0000-4000-8000-000000000002", "X", &["/"]) },
            "InvalidRoleDefinition",
        ),
        (custom_role("2a2b3c4d-0000-4000-8000-000000000002", "jit OPERATOR", &["/"]), "RoleDefinitionWithSameNameExists"),
        (RoleDefinition { name: "Another".into(), ..changed.clone() }, "RoleDefinitionWithSameNameExists"),
    ];
    for (role, expected) in refusals {
        let name = role.name.clone();
        assert_eq!(code(store.put_role_definition(role, audit(a::ROLE_DEFINITIONS_WRITE)).await), expected, "{name}");
    }

    assert_eq!(code(store.delete_role_definition(OWNER_ID, audit(a::ROLE_DEFINITIONS_DELETE)).await), "InvalidRoleDefinition");
    let admin = admin(&*store).await;
    let held = assignment(&guid(1), &admin.id, CUSTOM_ID, &format!("/subscriptions/{SUB}"));
    store.create_role_assignment(held, audit(a::ROLE_ASSIGNMENTS_WRITE)).await.unwrap();
    assert_eq!(code(store.delete_role_definition(CUSTOM_ID, audit(a::ROLE_DEFINITIONS_DELETE)).await), "RoleDefinitionHasAssignments");
    store.delete_role_assignment(&guid(1), audit(a::ROLE_ASSIGNMENTS_DELETE)).await.unwrap().unwrap();
    assert!(store.delete_role_definition(CUSTOM_ID, audit(a::ROLE_DEFINITIONS_DELETE)).await.unwrap());
    assert!(!store.delete_role_definition(CUSTOM_ID, audit(a::ROLE_DEFINITIONS_DELETE)).await.unwrap());
    assert_eq!(store.get_role_definition(CUSTOM_ID).await.unwrap(), None);
}

pub async fn role_assignments_are_created_listed_and_deleted(place: &dyn Place) {
    let store = fresh(place).await;
    let bob = store.create_principal(user("bob"), audit(a::PRINCIPALS_WRITE)).await.unwrap();
    let carol = store.create_principal(user("carol"), audit(a::PRINCIPALS_WRITE)).await.unwrap();
    store
        .put_role_definition(custom_role(CUSTOM_ID, "Sub operator", &[&format!("/subscriptions/{SUB}")]), audit(a::ROLE_DEFINITIONS_WRITE))
        .await
        .unwrap();
    let sub = format!("/subscriptions/{SUB}");
    let rg_a = format!("{sub}/resourceGroups/a");
    let rg_ab = format!("{sub}/resourceGroups/a_b");
    let vm = format!("{rg_a}/providers/Microsoft.Compute/virtualMachines/vm1");
    // (assignment number, principal, role, scope)
    let table = [
        (2, &bob, READER_ID.to_owned(), sub.clone()),
        (3, &bob, CUSTOM_ID.to_owned(), rg_a.clone()),
        (4, &carol, CONTRIBUTOR_ID.to_owned(), vm.clone()),
        (
            5,
            &carol,
            format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{}", READER_ID.to_uppercase()),
            rg_ab.clone(),
        ),
        (6, &carol, READER_ID.to_owned(), format!("/subscriptions/{OTHER_SUB}")),
    ];
    for (n, who, role, at) in &table {
        let created = store.create_role_assignment(assignment(&guid(*n), &who.id, role, at), audit(a::ROLE_ASSIGNMENTS_WRITE)).await;
        assert_eq!(created.unwrap(), PutOutcome::Created, "{n}");
    }
    // The same assignment again changes nothing; IDs are stored lower-cased.
    let again = assignment(&guid(2).to_uppercase(), &bob.id, READER_ID, &sub.to_uppercase().replace("SUBSCRIPTIONS", "subscriptions"));
    assert_eq!(store.create_role_assignment(again, audit(a::ROLE_ASSIGNMENTS_WRITE)).await.unwrap(), PutOutcome::Updated);
    let stored = store.get_role_assignment(&guid(5)).await.unwrap().unwrap();
    assert_eq!(stored.role_id, READER_ID);

    let refusals: Vec<(RoleAssignment, &str)> = vec![
        (assignment(&guid(10), "nobody", READER_ID, &sub), "PrincipalNotFound"),
        (assignment(&guid(10), &bob.id, "3daf09fb-cea9-4548-957a-9955c9ee6410", &sub), "RoleDefinitionDoesNotExist"),
        (assignment(&guid(10), &bob.id, CUSTOM_ID, &format!("/subscriptions/{OTHER_SUB}")), "ScopeNotAssignable"),
        (assignment(&guid(10), &bob.id, CUSTOM_ID, "/"), "ScopeNotAssignable"),
        (assignment(&guid(10), &bob.id, READER_ID, &sub.to_uppercase().replace("SUBSCRIPTIONS", "subscriptions")), "RoleAssignmentExists"),
        (assignment(&guid(2), &bob.id, CONTRIBUTOR_ID, &sub), "RoleAssignmentUpdateNotPermitted"),
        (assignment("not-a-guid", &bob.id, READER_ID, "/"), "InvalidRoleAssignment"),
    ];
    for (assignment, expected) in refusals {
        let what = format!("{assignment:?}");
        assert_eq!(code(store.create_role_assignment(assignment, audit(a::ROLE_ASSIGNMENTS_WRITE)).await), expected, "{what}");
    }

    let ids = |list: Vec<RoleAssignment>| list.into_iter().map(|a| a.id).collect::<Vec<_>>();
    let filters: Vec<(AssignmentFilter, Vec<u32>)> = vec![
        (AssignmentFilter { principal_id: Some(bob.id.clone()), scope: None }, vec![2, 3]),
        (AssignmentFilter { principal_id: Some(carol.id.clone()), scope: None }, vec![6, 4, 5]),
        (AssignmentFilter { principal_id: None, scope: Some(scope(&sub)) }, vec![2, 3, 4, 5]),
        (
            AssignmentFilter { principal_id: None, scope: Some(scope(&rg_a.to_uppercase().replace("SUBSCRIPTIONS", "subscriptions"))) },
            vec![3, 4],
        ),
        (AssignmentFilter { principal_id: None, scope: Some(scope(&vm)) }, vec![4]),
        (AssignmentFilter { principal_id: Some(bob.id.clone()), scope: Some(scope(&rg_a)) }, vec![3]),
        (AssignmentFilter { principal_id: None, scope: Some(scope(&format!("{sub}/resourceGroups/b"))) }, vec![]),
    ];
    for (filter, expected) in filters {
        let mut got = ids(store.list_role_assignments(filter.clone()).await.unwrap());
        let mut want: Vec<String> = expected.iter().map(|n| guid(*n)).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{filter:?}");
    }
    let everything = store.list_role_assignments(AssignmentFilter { principal_id: None, scope: Some(Scope::root()) }).await.unwrap();
    assert_eq!(everything.len(), 6, "the admin's Owner at '/' and the five above");

    let removed = store.delete_role_assignment(&guid(3).to_uppercase(), audit(a::ROLE_ASSIGNMENTS_DELETE)).await.unwrap().unwrap();
    assert_eq!((removed.principal_id.as_str(), removed.role_id.as_str()), (bob.id.as_str(), CUSTOM_ID));
    assert_eq!(store.delete_role_assignment(&guid(3), audit(a::ROLE_ASSIGNMENTS_DELETE)).await.unwrap(), None);
    assert_eq!(store.get_role_assignment(&guid(3)).await.unwrap(), None);
}

pub async fn deleting_a_principal_ends_its_tokens_and_assignments(place: &dyn Place) {
    let store = fresh(place).await;
    let bob = store.create_principal(user("bob"), audit(a::PRINCIPALS_WRITE)).await.unwrap();
    store.create_token(token(&bob.id, 20, "one"), audit(a::PRINCIPAL_TOKENS_WRITE)).await.unwrap();
    store.create_token(token(&bob.id, 21, "two"), audit(a::PRINCIPAL_TOKENS_WRITE)).await.unwrap();
    for (n, at) in [(1, "/".to_owned()), (2, format!("/subscriptions/{SUB}"))] {
        store.create_role_assignment(assignment(&guid(n), &bob.id, READER_ID, &at), audit(a::ROLE_ASSIGNMENTS_WRITE)).await.unwrap();
    }
    assert!(store.delete_principal(&bob.id, audit(a::PRINCIPALS_DELETE)).await.unwrap());
    for hash in [20, 21] {
        assert_eq!(store.principal_for_token([hash; 32], TokenPurpose::Api).await.unwrap(), None);
    }
    assert!(store.list_tokens(Some(&bob.id)).await.unwrap().is_empty());
    let left = store.list_role_assignments(AssignmentFilter { principal_id: Some(bob.id.clone()), scope: None }).await.unwrap();
    assert!(left.is_empty());
    let entry = &store.activity(ActivityQuery { limit: Some(1), ..Default::default() }).await.unwrap()[0];
    assert_eq!(entry.operation, a::PRINCIPALS_DELETE);
    let details: Vec<(&str, &str)> = entry.details.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(details, [("deletedTokens", "2"), ("deletedRoleAssignments", "2")]);
}

pub async fn the_last_owner_at_the_root_cannot_be_removed(place: &dyn Place) {
    let store = fresh(place).await;
    let admin = admin(&*store).await;
    let owner_assignment = store.list_role_assignments(AssignmentFilter::default()).await.unwrap()[0].id.clone();
    assert_eq!(code(store.delete_principal(&admin.id, audit(a::PRINCIPALS_DELETE)).await), "LastOwner");
    assert_eq!(code(store.delete_role_assignment(&owner_assignment, audit(a::ROLE_ASSIGNMENTS_DELETE)).await), "LastOwner");
    // Owner below the root does not count.
    let bob = store.create_principal(user("bob"), audit(a::PRINCIPALS_WRITE)).await.unwrap();
    store
        .create_role_assignment(assignment(&guid(1), &bob.id, OWNER_ID, &format!("/subscriptions/{SUB}")), audit(a::ROLE_ASSIGNMENTS_WRITE))
        .await
        .unwrap();
    assert_eq!(code(store.delete_principal(&admin.id, audit(a::PRINCIPALS_DELETE)).await), "LastOwner");
    store.create_role_assignment(assignment(&guid(2), &bob.id, OWNER_ID, "/"), audit(a::ROLE_ASSIGNMENTS_WRITE)).await.unwrap();
    assert!(store.delete_principal(&admin.id, audit(a::PRINCIPALS_DELETE)).await.unwrap());
    assert_eq!(code(store.delete_principal(&bob.id, audit(a::PRINCIPALS_DELETE)).await), "LastOwner");
    assert_eq!(code(store.delete_role_assignment(&guid(2), audit(a::ROLE_ASSIGNMENTS_DELETE)).await), "LastOwner");
    // Bob's Owner at the subscription is not protected.
    assert!(store.delete_role_assignment(&guid(1), audit(a::ROLE_ASSIGNMENTS_DELETE)).await.unwrap().is_some());
}

/// Checks one write: exactly one new activity entry, with its operation and
/// outcome, and an access version that moved if and only if it succeeded.
struct Tracker {
    entries: usize,
    version: u64,
}

impl Tracker {
    async fn new(store: &dyn Store) -> Tracker {
        Tracker { entries: store.activity(ActivityQuery::default()).await.unwrap().len(), version: store.access_version() }
    }

    async fn check<T: std::fmt::Debug>(
        &mut self,
        store: &dyn Store,
        operation: &str,
        result: StoreResult<T>,
        refusal: Option<&str>,
    ) -> Option<T> {
        let log = store.activity(ActivityQuery::default()).await.unwrap();
        assert_eq!(log.len(), self.entries + 1, "{operation}: one entry per write");
        self.entries = log.len();
        assert_eq!(log[0].operation, operation);
        let version = store.access_version();
        match (result, refusal) {
            (Ok(value), None) => {
                assert_eq!(log[0].outcome, Outcome::Succeeded, "{operation}");
                assert_ne!(version, self.version, "{operation}: a committed write moves the version");
                self.version = version;
                Some(value)
            }
            (Err(StoreError::Rejected(p)), Some(code)) => {
                assert_eq!(p.code.as_str(), code, "{operation}");
                assert_eq!(log[0].outcome, Outcome::Failed { code: code.to_owned() }, "{operation}");
                assert_eq!(version, self.version, "{operation}: a refused write changes nothing");
                None
            }
            (got, want) => panic!("{operation}: got {got:?}, expected refusal {want:?}"),
        }
    }

    /// Reads leave both alone.
    async fn reads_changed_nothing(&self, store: &dyn Store) {
        assert_eq!(store.access_version(), self.version);
        assert_eq!(store.activity(ActivityQuery::default()).await.unwrap().len(), self.entries);
    }
}

pub async fn every_write_is_logged_and_moves_the_access_version(place: &dyn Place) {
    let store = fresh(place).await;
    let mut t = Tracker::new(&*store).await;

    let (op, r) = (a::PRINCIPALS_WRITE, store.create_principal(user("bob"), audit(a::PRINCIPALS_WRITE)).await);
    let bob = t.check(&*store, op, r, None).await.unwrap();
    t.check(&*store, op, store.create_principal(user("bob"), audit(op)).await, Some("PrincipalExists")).await;

    let op = a::PRINCIPAL_TOKENS_WRITE;
    let tok = t.check(&*store, op, store.create_token(token(&bob.id, 30, "t"), audit(op)).await, None).await.unwrap();
    t.check(&*store, op, store.create_token(token("nobody", 31, "t"), audit(op)).await, Some("PrincipalNotFound")).await;
    let op = a::PRINCIPAL_TOKENS_DELETE;
    t.check(&*store, op, store.revoke_token(&tok.id, audit(op)).await, None).await;

    let op = a::ROLE_DEFINITIONS_WRITE;
    t.check(&*store, op, store.put_role_definition(custom_role(CUSTOM_ID, "Op", &["/"]), audit(op)).await, None).await;
    t.check(&*store, op, store.put_role_definition(custom_role(OWNER_ID, "Op", &["/"]), audit(op)).await, Some("InvalidRoleDefinition"))
        .await;

    let op = a::ROLE_ASSIGNMENTS_WRITE;
    t.check(&*store, op, store.create_role_assignment(assignment(&guid(1), &bob.id, CUSTOM_ID, "/"), audit(op)).await, None).await;
    t.check(
        &*store,
        op,
        store.create_role_assignment(assignment(&guid(2), &bob.id, CUSTOM_ID, "/"), audit(op)).await,
        Some("RoleAssignmentExists"),
    )
    .await;
    let op = a::ROLE_DEFINITIONS_DELETE;
    t.check(&*store, op, store.delete_role_definition(CUSTOM_ID, audit(op)).await, Some("RoleDefinitionHasAssignments")).await;
    let op = a::ROLE_ASSIGNMENTS_DELETE;
    t.check(&*store, op, store.delete_role_assignment(&guid(1), audit(op)).await, None).await;
    let op = a::ROLE_DEFINITIONS_DELETE;
    t.check(&*store, op, store.delete_role_definition(CUSTOM_ID, audit(op)).await, None).await;

    let admin = admin(&*store).await;
    let op = a::PRINCIPALS_DELETE;
    t.check(&*store, op, store.delete_principal(&admin.id, audit(op)).await, Some("LastOwner")).await;
    t.check(&*store, op, store.delete_principal(&bob.id, audit(op)).await, None).await;

    // Reads move nothing.
    store.list_principals().await.unwrap();
    store.get_principal(&admin.id).await.unwrap();
    store.principal_for_oidc("i", "s").await.unwrap();
    store.principal_for_token(ADMIN_TOKEN, TokenPurpose::Api).await.unwrap();
    store.list_tokens(None).await.unwrap();
    store.list_role_definitions().await.unwrap();
    store.get_role_definition(OWNER_ID).await.unwrap();
    store.list_role_assignments(AssignmentFilter::default()).await.unwrap();
    let snapshot = store.access_snapshot().await.unwrap();
    assert_eq!(snapshot.version, store.access_version());
    t.reads_changed_nothing(&*store).await;
    assert!(store.verify_activity_chain().await.unwrap().is_ok());
    // No token hash reached the log.
    let hex30 = "1e".repeat(32);
    let log = store.activity(ActivityQuery::default()).await.unwrap();
    assert!(log.iter().all(|e| e.details.iter().all(|(_, v)| !v.contains(&hex30))));
}

pub async fn a_restart_does_not_reuse_access_versions(place: &dyn Place) {
    let store = fresh(place).await;
    store.create_principal(user("bob"), audit(a::PRINCIPALS_WRITE)).await.unwrap();
    let before = store.access_version();
    drop(store);
    let reopened = place.open().await;
    assert!(reopened.access_version() > before);
}
