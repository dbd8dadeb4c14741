//! The shipping protocol's log records: `Seal` and `Shipped`, carried by a shard
//! group's control entries (replication/command.rs) in this encoding, which the
//! single-node log used before them. Layout: a kind byte (3 seal every tenant, 4 shipped
//! every tenant, as logs written before per-tenant shipping have them; 5 seal, 6
//! shipped), the tenant for kinds 5 and 6, the boundary (zig-zag varint), and for
//! shipped the blocks (count, then tenant and ULID strings).

use hearth_core::Tenant;

use hearth_series::codec::{Dec, DecodeError, Enc};

/// Block shipping, in two steps (see shipping.md): seal a time range, then mark it
/// shipped. Kinds 3 and 4 (every tenant at once) are still read; kinds 5 and 6 name the
/// tenant they apply to.
const KIND_SEAL_ALL: u8 = 3;
const KIND_SHIPPED_ALL: u8 = 4;
const KIND_SEAL: u8 = 5;
const KIND_SHIPPED: u8 = 6;

/// A control entry of the block-shipping protocol, for one tenant (`None`: every
/// tenant, as logs written before per-tenant shipping have it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlRecord {
    /// From this entry on, the tenant's head takes samples older than `before` only as
    /// late (out-of-order) data, kept apart, so what it held before `before` can no
    /// longer change and can be written as blocks.
    Seal { tenant: Option<Tenant>, before: i64 },
    /// The tenant's data sealed before `before` is in these blocks (tenant, ULID),
    /// uploaded and verified: the head drops it, and the log before this entry can be
    /// purged once a checkpoint follows.
    Shipped {
        tenant: Option<Tenant>,
        before: i64,
        blocks: Vec<(String, String)>,
    },
}

pub fn encode_control(rec: &ControlRecord) -> Vec<u8> {
    let mut e = Enc { buf: Vec::new() };
    match rec {
        ControlRecord::Seal { tenant, before } => {
            match tenant {
                Some(t) => {
                    e.u8(KIND_SEAL);
                    e.str(t.as_str());
                }
                None => e.u8(KIND_SEAL_ALL),
            }
            e.varint(*before);
        }
        ControlRecord::Shipped {
            tenant,
            before,
            blocks,
        } => {
            match tenant {
                Some(t) => {
                    e.u8(KIND_SHIPPED);
                    e.str(t.as_str());
                }
                None => e.u8(KIND_SHIPPED_ALL),
            }
            e.varint(*before);
            e.uvarint(blocks.len() as u64);
            for (tenant, ulid) in blocks {
                e.str(tenant);
                e.str(ulid);
            }
        }
    }
    e.buf
}

/// Decodes a control record.
pub fn decode_control(payload: &[u8]) -> Result<ControlRecord, DecodeError> {
    let Some(&kind) = payload.first() else {
        return Err(DecodeError);
    };
    let mut d = Dec::new(&payload[1..]);
    let tenant = match kind {
        KIND_SEAL | KIND_SHIPPED => Some(Tenant::new(d.str()?).map_err(|_| DecodeError)?),
        KIND_SEAL_ALL | KIND_SHIPPED_ALL => None,
        _ => return Err(DecodeError),
    };
    let before = d.varint()?;
    if kind == KIND_SEAL || kind == KIND_SEAL_ALL {
        return Ok(ControlRecord::Seal { tenant, before });
    }
    let n = d.count(2)?;
    let mut blocks = Vec::with_capacity(n);
    for _ in 0..n {
        let t = d.str()?.to_string();
        blocks.push((t, d.str()?.to_string()));
    }
    Ok(ControlRecord::Shipped {
        tenant,
        before,
        blocks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_records_round_trip_and_garbage_is_an_error() {
        let t = Some(Tenant::new("team-a").unwrap());
        for rec in [
            ControlRecord::Seal {
                tenant: None,
                before: -5,
            },
            ControlRecord::Seal {
                tenant: t.clone(),
                before: 9,
            },
            ControlRecord::Shipped {
                tenant: None,
                before: 7_200_000,
                blocks: vec![("a".into(), "01J".into()), ("b".into(), "01K".into())],
            },
            ControlRecord::Shipped {
                tenant: t,
                before: 7_200_000,
                blocks: vec![("team-a".into(), "01J".into())],
            },
        ] {
            let bytes = encode_control(&rec);
            assert_eq!(decode_control(&bytes).unwrap(), rec);
            for cut in 0..bytes.len() {
                assert!(decode_control(&bytes[..cut]).is_err());
            }
        }
        assert!(decode_control(&[4, 2]).is_err());
        assert!(decode_control(&[6, 0]).is_err());
        assert!(decode_control(&[2, 0, 0]).is_err());
    }
}
