//! The openraft type configuration, the replicated request/response types, and the network.
//!
//! Every write (a transaction or a compaction) goes through the raft log, also for a one-member
//! group, so that single-server and HA control planes share one code path.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use futures::future::BoxFuture;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use serde::{Deserialize, Serialize};

use super::codec::{decode_ops, encode_ops, Dec, Enc};
use super::types::{Op, Revision, StoreError, TxnOutcome};

openraft::declare_raft_types!(
    /// wkube's raft types: node ids are u64, nodes carry an address, snapshots are files.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type LogId = openraft::LogId<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Raft = openraft::Raft<TypeConfig>;

/// A replicated write: the payload of a normal raft log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// An atomic transaction: all ops at one new revision, or none.
    Txn(Vec<Op>),
    /// Drop history up to this revision (consumes no revision).
    Compact(Revision),
    /// Independent transactions committed as one log entry (group commit, see `batcher`):
    /// each is still atomic on its own and gets its own revision, in order.
    Batch(Vec<Vec<Op>>),
}

impl Request {
    fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        match self {
            Request::Txn(ops) => {
                e.u8(0);
                encode_ops(&mut e, ops);
            }
            Request::Compact(rev) => {
                e.u8(1).u64(*rev);
            }
            Request::Batch(txns) => {
                e.u8(2).u64(txns.len() as u64);
                for ops in txns {
                    encode_ops(&mut e, ops);
                }
            }
        }
        e.buf
    }

    fn decode(b: &[u8]) -> Result<Self, StoreError> {
        let mut d = Dec::new(b, "raft request");
        let req = match d.u8()? {
            0 => Request::Txn(decode_ops(&mut d)?),
            1 => Request::Compact(d.u64()?),
            2 => {
                let n = d.u64()?;
                let mut txns = Vec::with_capacity(n.min(4096) as usize);
                for _ in 0..n {
                    txns.push(decode_ops(&mut d)?);
                }
                Request::Batch(txns)
            }
            t => return Err(StoreError::Storage(format!("unknown raft request tag {t}"))),
        };
        d.finish()?;
        Ok(req)
    }
}

/// Log entries are stored (and later sent to peers) as JSON; the request is carried as one
/// base64 string of its binary encoding so that values do not balloon into number arrays.
impl Serialize for Request {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(self.encode()))
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let b = base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)?;
        Request::decode(&b).map_err(serde::de::Error::custom)
    }
}

/// The deterministic outcome of applying one transaction.
pub type TxnResult = Result<TxnOutcome, TxnError>;

/// The outcome of applying one log entry: one result per transaction it carried (exactly one
/// for `Txn`, `Compact` and the entries raft writes itself).
pub type Response = Vec<TxnResult>;

/// Why a transaction's checks failed inside the state machine (serializable, unlike StoreError).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TxnError {
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    #[error("key {0:?} not found")]
    NotFound(String),
    #[error("conflict on key {key:?}: expected revision {expected}, current is {current}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Revision,
    },
}

impl From<TxnError> for StoreError {
    fn from(e: TxnError) -> Self {
        match e {
            TxnError::AlreadyExists(k) => StoreError::AlreadyExists(k),
            TxnError::NotFound(k) => StoreError::NotFound(k),
            TxnError::Conflict {
                key,
                expected,
                current,
            } => StoreError::Conflict {
                key,
                expected,
                current,
            },
        }
    }
}

/// The members of a fresh group made of this node only.
pub(crate) fn single_member(node_id: NodeId) -> BTreeMap<NodeId, BasicNode> {
    BTreeMap::from([(node_id, BasicNode::new(""))])
}

type RpcResult<T, E = std::convert::Infallible> = Result<T, RPCError<NodeId, BasicNode, E>>;

/// How raft RPCs reach peers. The multi-server HTTPS transport will implement this; until then
/// [`NoTransport`] is used, which a one-member group never calls.
pub trait RaftTransport: Send + Sync + 'static {
    fn append_entries(
        &self,
        target: NodeId,
        node: BasicNode,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> BoxFuture<'static, RpcResult<AppendEntriesResponse<NodeId>, RaftError<NodeId>>>;

    fn install_snapshot(
        &self,
        target: NodeId,
        node: BasicNode,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> BoxFuture<
        'static,
        RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    >;

    fn vote(
        &self,
        target: NodeId,
        node: BasicNode,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> BoxFuture<'static, RpcResult<VoteResponse<NodeId>, RaftError<NodeId>>>;
}

/// The error every RPC of [`NoTransport`] fails with.
#[derive(Debug, thiserror::Error)]
#[error("wkube: raft transport to peer {0} is not available (multi-server control planes are not implemented yet)")]
pub struct TransportUnavailable(pub NodeId);

fn unreachable<E: std::error::Error>(target: NodeId) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&TransportUnavailable(target)))
}

/// The transport of a server that cannot talk to peers: every RPC reports the peer unreachable.
pub struct NoTransport;

impl RaftTransport for NoTransport {
    fn append_entries(
        &self,
        target: NodeId,
        _node: BasicNode,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> BoxFuture<'static, RpcResult<AppendEntriesResponse<NodeId>, RaftError<NodeId>>> {
        Box::pin(async move { Err(unreachable(target)) })
    }

    fn install_snapshot(
        &self,
        target: NodeId,
        _node: BasicNode,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> BoxFuture<
        'static,
        RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Box::pin(async move { Err(unreachable(target)) })
    }

    fn vote(
        &self,
        target: NodeId,
        _node: BasicNode,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> BoxFuture<'static, RpcResult<VoteResponse<NodeId>, RaftError<NodeId>>> {
        Box::pin(async move { Err(unreachable(target)) })
    }
}

/// openraft's network factory: hands out per-peer clients that delegate to the transport.
#[derive(Clone)]
pub struct Network {
    transport: Arc<dyn RaftTransport>,
}

impl Network {
    pub fn new(transport: Arc<dyn RaftTransport>) -> Self {
        Network { transport }
    }
}

/// A client for one peer.
pub struct PeerClient {
    target: NodeId,
    node: BasicNode,
    transport: Arc<dyn RaftTransport>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            node: node.clone(),
            transport: self.transport.clone(),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        self.transport
            .append_entries(self.target, self.node.clone(), rpc, option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        self.transport
            .install_snapshot(self.target, self.node.clone(), rpc, option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, RaftError<NodeId>> {
        self.transport
            .vote(self.target, self.node.clone(), rpc, option)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_json_roundtrip() {
        let r = Request::Txn(vec![Op::Create {
            key: "/a".into(),
            value: vec![7; 100],
        }]);
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.len() < 200, "{s}");
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
        let c = Request::Compact(5);
        assert_eq!(
            serde_json::from_str::<Request>(&serde_json::to_string(&c).unwrap()).unwrap(),
            c
        );
        let b = Request::Batch(vec![
            vec![Op::Delete {
                key: "/b".into(),
                expected: Some(3),
            }],
            vec![],
            vec![Op::Update {
                key: "/c".into(),
                value: b"x".to_vec(),
                expected: None,
            }],
        ]);
        assert_eq!(
            serde_json::from_str::<Request>(&serde_json::to_string(&b).unwrap()).unwrap(),
            b
        );
    }

    #[tokio::test]
    async fn no_transport_is_unreachable_with_message() {
        let mut net = Network::new(Arc::new(NoTransport));
        let mut client = net.new_client(7, &BasicNode::new("x")).await;
        let rpc = VoteRequest::new(openraft::Vote::new(1, 1), None);
        let err = client
            .vote(rpc, RPCOption::new(std::time::Duration::from_secs(1)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(
            "wkube: raft transport to peer 7 is not available (multi-server control planes are not implemented yet)"
        ));
    }
}
