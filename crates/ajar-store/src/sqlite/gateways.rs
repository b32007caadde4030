//! The SQL of gateways, their agents, and the machines behind them.

use rusqlite::{Connection, params};
use time::OffsetDateTime;

use ajar_domain::VmId;
use ajar_domain::gateway::{Gateway, GatewayName, PortRange};
use ajar_domain::inventory::{AgentInfo, Vm};

use super::codec::{decode_addresses, encode_addresses, from_ns, to_ns};
use super::inventory::{VM_COLUMNS, vm_from_row};
use super::{backend, db};
use crate::{NewAgent, StoreResult};

const GATEWAY_COLUMNS: &str = "name, public_addresses, first_port, last_port, agent_id, version, nft_error, last_seen_ns, applied";

fn gateway_from_row(r: &rusqlite::Row<'_>) -> StoreResult<Gateway> {
    let err = db("reading a gateway");
    let name: String = r.get(0).map_err(&err)?;
    let addresses: String = r.get(1).map_err(&err)?;
    Ok(Gateway {
        name: name.parse().map_err(|e| backend("stored gateway name", e))?,
        public: decode_addresses(&addresses)?,
        mapped_ports: PortRange::new(r.get(2).map_err(&err)?, r.get(3).map_err(&err)?).map_err(|e| backend("stored port range", e))?,
        agent: AgentInfo {
            agent_id: r.get(4).map_err(&err)?,
            version: r.get(5).map_err(&err)?,
            nftables: r.get::<_, Option<String>>(6).map_err(&err)?.map_or(Ok(()), Err),
            last_seen: from_ns(r.get(7).map_err(&err)?)?,
            applied: r.get(8).map_err(&err)?,
        },
    })
}

pub(crate) fn gateway(c: &Connection, name: &GatewayName) -> StoreResult<Option<Gateway>> {
    let mut stmt = c.prepare_cached(&format!("SELECT {GATEWAY_COLUMNS} FROM gateways WHERE key = ?1")).map_err(db("reading a gateway"))?;
    let mut rows = stmt.query([name.key()]).map_err(db("reading a gateway"))?;
    rows.next().map_err(db("reading a gateway"))?.map(gateway_from_row).transpose()
}

pub(crate) fn gateways(c: &Connection) -> StoreResult<Vec<Gateway>> {
    let mut stmt = c.prepare_cached(&format!("SELECT {GATEWAY_COLUMNS} FROM gateways ORDER BY key")).map_err(db("listing gateways"))?;
    let mut rows = stmt.query([]).map_err(db("listing gateways"))?;
    let mut all = Vec::new();
    while let Some(r) = rows.next().map_err(db("listing gateways"))? {
        all.push(gateway_from_row(r)?);
    }
    Ok(all)
}

pub(crate) fn served_by(c: &Connection, name: &GatewayName) -> StoreResult<Vec<Vm>> {
    let mut stmt = c
        .prepare_cached(&format!(
            "SELECT {VM_COLUMNS} FROM vms v LEFT JOIN agents a ON a.vm_key = v.key WHERE v.gateway_key = ?1 ORDER BY v.key"
        ))
        .map_err(db("listing a gateway's machines"))?;
    let mut rows = stmt.query([name.key()]).map_err(db("listing a gateway's machines"))?;
    let mut vms = Vec::new();
    while let Some(r) = rows.next().map_err(db("listing a gateway's machines"))? {
        vms.push(vm_from_row(r)?.1);
    }
    Ok(vms)
}

pub(crate) fn insert_gateway(c: &Connection, gateway: &Gateway, agent: &NewAgent, now: OffsetDateTime) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO gateways (key, name, public_addresses, first_port, last_port, agent_id, token_hash, version, nft_error, applied,
                               enrolled_ns, last_seen_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?10, ?10)",
    )
    .map_err(db("recording a gateway"))?
    .execute(params![
        gateway.name.key(),
        gateway.name.as_str(),
        encode_addresses(&gateway.public),
        gateway.mapped_ports.first(),
        gateway.mapped_ports.last(),
        gateway.agent.agent_id,
        agent.token_hash.as_slice(),
        agent.version,
        agent.nftables.as_ref().err(),
        to_ns(now)
    ])
    .map_err(db("recording a gateway"))?;
    Ok(())
}

pub(crate) fn delete_gateway(c: &Connection, name: &GatewayName) -> StoreResult<bool> {
    let n = c
        .prepare_cached("DELETE FROM gateways WHERE key = ?1")
        .map_err(db("deleting a gateway"))?
        .execute([name.key()])
        .map_err(db("deleting a gateway"))?;
    Ok(n > 0)
}

pub(crate) fn set_vm_gateway(c: &Connection, vm: &VmId, gateway: Option<&GatewayName>) -> StoreResult<()> {
    c.prepare_cached("UPDATE vms SET gateway_key = ?2 WHERE key = ?1")
        .map_err(db("putting a machine behind a gateway"))?
        .execute(params![vm.key(), gateway.map(GatewayName::key)])
        .map_err(db("putting a machine behind a gateway"))?;
    Ok(())
}
