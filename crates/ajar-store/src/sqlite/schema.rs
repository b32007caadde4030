//! Versioned schema migrations, tracked in `PRAGMA user_version`.

use rusqlite::Connection;

use crate::{StoreError, StoreResult};

/// Each entry moves the schema from version N to N+1. Append only: never edit a
/// migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE subscriptions (id TEXT PRIMARY KEY, display_name TEXT NOT NULL, created_ns INTEGER NOT NULL);
    CREATE TABLE principals (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, created_ns INTEGER NOT NULL);
    CREATE TABLE tokens (
        hash BLOB PRIMARY KEY,
        principal_id TEXT NOT NULL REFERENCES principals(id),
        purpose TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        expires_ns INTEGER,
        revoked_ns INTEGER
    );
    CREATE TABLE vms (
        key TEXT PRIMARY KEY,
        id TEXT NOT NULL,
        subscription TEXT NOT NULL,
        rg_key TEXT NOT NULL,
        location TEXT NOT NULL,
        os TEXT NOT NULL,
        addresses TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL
    );
    CREATE INDEX vms_scope ON vms(subscription, rg_key, key);
    CREATE TABLE policies (
        key TEXT PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        id TEXT NOT NULL,
        subscription TEXT NOT NULL,
        rg_key TEXT NOT NULL,
        loc_key TEXT NOT NULL,
        kind TEXT,
        created_ns INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL
    );
    CREATE INDEX policies_scope ON policies(subscription, key);
    -- A machine is in at most one policy: two would disagree on its ports.
    CREATE TABLE policy_vms (
        vm_key TEXT PRIMARY KEY,
        policy_key TEXT NOT NULL REFERENCES policies(key) ON DELETE CASCADE,
        vm_id TEXT NOT NULL,
        ord INTEGER NOT NULL,
        public_ip TEXT
    );
    CREATE INDEX policy_vms_policy ON policy_vms(policy_key, ord);
    CREATE TABLE policy_ports (
        vm_key TEXT NOT NULL REFERENCES policy_vms(vm_key) ON DELETE CASCADE,
        ord INTEGER NOT NULL,
        number INTEGER NOT NULL,
        protocol TEXT NOT NULL,
        sources TEXT NOT NULL,
        sources_is_list INTEGER NOT NULL,
        max_duration_ns INTEGER NOT NULL,
        PRIMARY KEY (vm_key, number)
    );
    CREATE TABLE access_requests (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        policy_uid TEXT NOT NULL,
        policy_id TEXT NOT NULL,
        requestor TEXT NOT NULL,
        principal_id TEXT NOT NULL,
        caller_addr TEXT,
        start_ns INTEGER NOT NULL,
        justification TEXT
    );
    CREATE INDEX access_requests_policy ON access_requests(policy_uid, seq);
    CREATE TABLE grants (
        request_seq INTEGER NOT NULL REFERENCES access_requests(seq),
        vm_key TEXT NOT NULL,
        vm_id TEXT NOT NULL,
        vm_ord INTEGER NOT NULL,
        port_ord INTEGER NOT NULL,
        number INTEGER NOT NULL,
        protocol TEXT NOT NULL,
        sources TEXT NOT NULL,
        sources_is_list INTEGER NOT NULL,
        end_ns INTEGER NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL,
        mapped_port INTEGER,
        PRIMARY KEY (request_seq, vm_key, number)
    );
    CREATE INDEX grants_live ON grants(vm_key, number) WHERE status = 'Initiated';
    CREATE INDEX grants_expiry ON grants(end_ns) WHERE status = 'Initiated';
    CREATE INDEX grants_vm ON grants(vm_key, request_seq);
    -- The activity log is append-only; each row's chain hash covers the row and
    -- the previous row's hash, so an edited or deleted row breaks the chain.
    CREATE TABLE activity (
        seq INTEGER PRIMARY KEY,
        time_ns INTEGER NOT NULL,
        subscription TEXT,
        resource_group TEXT,
        resource_id TEXT NOT NULL,
        operation TEXT NOT NULL,
        caller TEXT NOT NULL,
        caller_addr TEXT,
        result TEXT NOT NULL,
        error_code TEXT,
        details TEXT NOT NULL,
        chain BLOB NOT NULL
    );
    CREATE INDEX activity_time ON activity(time_ns);
    CREATE INDEX activity_caller ON activity(caller, time_ns);
    CREATE TABLE activity_subjects (key TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (key, seq)) WITHOUT ROWID;
    "#,
    // 2: host agents, one per machine, each with its own credential.
    r#"
    CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        vm_key TEXT NOT NULL UNIQUE,
        token_hash BLOB NOT NULL UNIQUE,
        version TEXT NOT NULL,
        nft_error TEXT,
        applied TEXT,
        enrolled_ns INTEGER NOT NULL,
        last_seen_ns INTEGER NOT NULL
    );
    "#,
    // 3: cutting established connections on an early revoke (a policy setting),
    // and the cuts agents still have to carry out.
    r#"
    ALTER TABLE policies ADD COLUMN cut_connections_on_revoke INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE connection_cuts (
        seq INTEGER PRIMARY KEY,
        vm_key TEXT NOT NULL,
        request_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        protocol TEXT NOT NULL,
        sources TEXT NOT NULL,
        sources_is_list INTEGER NOT NULL,
        revoked_ns INTEGER NOT NULL
    );
    CREATE INDEX connection_cuts_vm ON connection_cuts(vm_key, revoked_ns);
    "#,
    // 4: identity and access control. Principals may be linked to an OIDC
    // identity; tokens get a public ID and a label; custom role definitions and
    // role assignments. Every principal that could call the API before (only the
    // bootstrap admin could, and it could do everything) becomes Owner at '/'.
    r#"
    ALTER TABLE principals ADD COLUMN oidc_issuer TEXT;
    ALTER TABLE principals ADD COLUMN oidc_subject TEXT;
    CREATE UNIQUE INDEX principals_oidc ON principals(oidc_issuer, oidc_subject) WHERE oidc_issuer IS NOT NULL;
    CREATE UNIQUE INDEX principals_name_nocase ON principals(lower(name));
    ALTER TABLE tokens ADD COLUMN id TEXT;
    ALTER TABLE tokens ADD COLUMN name TEXT;
    UPDATE tokens SET id = 'tok_' || lower(hex(randomblob(16))), name = 'bootstrap ' || purpose WHERE id IS NULL;
    CREATE UNIQUE INDEX tokens_id ON tokens(id);
    CREATE INDEX tokens_principal ON tokens(principal_id);
    CREATE TABLE role_definitions (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        actions TEXT NOT NULL,
        not_actions TEXT NOT NULL,
        assignable_scopes TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        updated_ns INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX role_definitions_name ON role_definitions(lower(name));
    -- principal_id is a principal's ID, or an identity of a configured OIDC issuer that has no principal
    -- (`oidc:{issuer}/{subject}`, `group:{issuer}/{group}`), so it references nothing.
    CREATE TABLE role_assignments (
        id TEXT PRIMARY KEY,
        principal_id TEXT NOT NULL,
        role_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        scope_key TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        created_by TEXT,
        UNIQUE (principal_id, role_id, scope_key)
    );
    CREATE INDEX role_assignments_principal ON role_assignments(principal_id);
    CREATE INDEX role_assignments_scope ON role_assignments(scope_key);
    CREATE INDEX role_assignments_role ON role_assignments(role_id);
    INSERT INTO role_assignments (id, principal_id, role_id, scope, scope_key, created_ns, created_by)
    SELECT lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || substr(lower(hex(randomblob(2))), 2) || '-'
               || substr('89ab', 1 + abs(random() % 4), 1) || substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))),
           p.id, '8e3af657-a8ff-443c-a75c-2fe8c4bcb635', '/', '/', CAST((julianday('now') - 2440587.5) * 86400000000000 AS INTEGER), 'migration'
    FROM principals p WHERE EXISTS (SELECT 1 FROM tokens t WHERE t.principal_id = p.id AND t.purpose = 'api');
    "#,
    // 5: grants over time, for the timeline. When a grant was revoked before its end (superseded
    // grants get the start of the request that superseded them; other early revocations kept no time);
    // requests by start time; and the longest grant ever given, which bounds how far before a window
    // a grant still open in it can have started.
    r#"
    ALTER TABLE grants ADD COLUMN revoked_ns INTEGER;
    UPDATE grants SET revoked_ns = (
        SELECT min(r2.start_ns) FROM grants g2 JOIN access_requests r2 ON r2.seq = g2.request_seq
        WHERE g2.vm_key = grants.vm_key AND g2.number = grants.number AND g2.request_seq > grants.request_seq
    ) WHERE status = 'Revoked' AND reason = 'NewerRequestInitiated';
    CREATE INDEX access_requests_start ON access_requests(start_ns);
    CREATE TABLE grant_bounds (id INTEGER PRIMARY KEY CHECK (id = 1), longest_ns INTEGER NOT NULL);
    INSERT INTO grant_bounds (id, longest_ns)
    SELECT 1, coalesce(max(g.end_ns - r.start_ns), 0) FROM grants g JOIN access_requests r ON r.seq = g.request_seq;
    "#,
    // 6: each policy version's entity tag, for conditional writes (If-Match).
    r#"
    ALTER TABLE policies ADD COLUMN etag TEXT NOT NULL DEFAULT '';
    UPDATE policies SET etag = lower(hex(randomblob(16)));
    "#,
    // 7: keys fold each character on its own (`arm_key`), so that `ς` and `σ`, `ſ` and `s`, `µ` and `μ`
    // are one key as in ARM, where whole strings were lower-cased before. Folding a key written then
    // gives the key of the name it came from, so every stored key is folded again; keys of ASCII names
    // do not change. Two machines (or policies) that are now one name stop the upgrade at their
    // primary key; duplicate role assignments and activity subjects merge.
    r#"
    PRAGMA defer_foreign_keys = ON;
    UPDATE vms SET key = arm_key(key), rg_key = arm_key(rg_key) WHERE key <> arm_key(key) OR rg_key <> arm_key(rg_key);
    UPDATE agents SET vm_key = arm_key(vm_key) WHERE vm_key <> arm_key(vm_key);
    UPDATE policies SET key = arm_key(key), rg_key = arm_key(rg_key), loc_key = arm_key(loc_key)
        WHERE key <> arm_key(key) OR rg_key <> arm_key(rg_key) OR loc_key <> arm_key(loc_key);
    UPDATE policy_vms SET vm_key = arm_key(vm_key), policy_key = arm_key(policy_key)
        WHERE vm_key <> arm_key(vm_key) OR policy_key <> arm_key(policy_key);
    UPDATE policy_ports SET vm_key = arm_key(vm_key) WHERE vm_key <> arm_key(vm_key);
    UPDATE grants SET vm_key = arm_key(vm_key) WHERE vm_key <> arm_key(vm_key);
    UPDATE connection_cuts SET vm_key = arm_key(vm_key) WHERE vm_key <> arm_key(vm_key);
    UPDATE OR REPLACE activity_subjects SET key = arm_key(key) WHERE key <> arm_key(key);
    UPDATE OR REPLACE role_assignments SET scope_key = arm_key(scope_key) WHERE scope_key <> arm_key(scope_key);
    "#,
    // 8: gateways, each with its one agent's credential; the gateway in front of a machine; the gateway
    // port of a cut grant, which the gateway cuts. A policy's `publicIpAddress` is its machine's
    // gateway's from now on: `policy_vms.public_ip` is no longer written or read.
    r#"
    CREATE TABLE gateways (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        public_addresses TEXT NOT NULL,
        first_port INTEGER NOT NULL,
        last_port INTEGER NOT NULL,
        agent_id TEXT NOT NULL UNIQUE,
        token_hash BLOB NOT NULL UNIQUE,
        version TEXT NOT NULL,
        nft_error TEXT,
        applied TEXT,
        enrolled_ns INTEGER NOT NULL,
        last_seen_ns INTEGER NOT NULL
    );
    ALTER TABLE vms ADD COLUMN gateway_key TEXT;
    CREATE INDEX vms_gateway ON vms(gateway_key) WHERE gateway_key IS NOT NULL;
    ALTER TABLE connection_cuts ADD COLUMN mapped_port INTEGER;
    "#,
];

pub(crate) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Applies the migrations up to `target` (for tests of upgrades; `migrate` goes all the way).
pub(crate) fn migrate_to(conn: &mut Connection, target: usize) -> StoreResult<()> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| StoreError::Backend(format!("reading the schema version: {e}")))?;
    let known = MIGRATIONS.len() as i64;
    if current > known {
        return Err(StoreError::Backend(format!(
            "the database has schema version {current}, newer than this ajar knows ({known}); run a newer ajar"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().take(target).skip(current as usize) {
        let version = i + 1;
        let tx = conn.transaction().map_err(|e| StoreError::Backend(format!("migration {version}: {e}")))?;
        tx.execute_batch(sql).map_err(|e| StoreError::Backend(format!("migration {version}: {e}")))?;
        tx.pragma_update(None, "user_version", version as i64).map_err(|e| StoreError::Backend(format!("migration {version}: {e}")))?;
        tx.commit().map_err(|e| StoreError::Backend(format!("migration {version}: {e}")))?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(())
}
