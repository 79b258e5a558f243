/*!
The `forcefield-target/1` protocol: its messages as serde types, and [`serve`], which makes any
[`Target`] speak it.

Newline-delimited JSON: the driver writes one request per line on the target's stdin, the target
writes exactly one reply per request, in order, on its stdout; stderr is the target's own (the driver
keeps its last lines for a crash report). The full specification, with an example exchange, is
`docs/worker-protocol.md`.

```
use forcefield_target::protocol::{Reply, Request, RequestBody};
let line = r#"{"id": 3, "op": "step", "count": 10}"#;
let request = Request::from_line(line).unwrap();
assert_eq!(request.body, RequestBody::Step { count: 10 });
assert_eq!(Reply::ok(3, serde_json::Value::Null).to_line(), r#"{"id":3,"ok":null}"#);
```
*/

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::target::{Edge, EnvFault, Graph, Params, Point, Target, TargetError};
use crate::wire;

/// The protocol name and version a hello carries.
pub const PROTOCOL: &str = "forcefield-target/1";

/// The body of a request: the operation and its arguments. In JSON, an object tagged by `"op"`
/// beside the request's `"id"`: `{"id": 4, "op": "remove_nodes", "ids": [1, 4]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum RequestBody {
    /// The handshake: the first request. The reply's value is a [`Hello`].
    Hello {
        /// The protocol the driver speaks ([`PROTOCOL`]).
        protocol: String,
    },
    /// [`Target::create`].
    Create {
        /// The graph.
        graph: Graph,
        /// Parameters (only to targets with the `params` capability).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        params: Option<Params>,
    },
    /// [`Target::add_nodes`].
    AddNodes {
        /// How many.
        count: u64,
        /// Their positions.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "wire::optional_points"
        )]
        positions: Option<Vec<Point>>,
    },
    /// [`Target::remove_nodes`].
    RemoveNodes {
        /// Ids to remove.
        ids: Vec<u32>,
    },
    /// [`Target::add_edges`].
    AddEdges {
        /// The edges.
        edges: Vec<Edge>,
    },
    /// [`Target::remove_edges`].
    RemoveEdges {
        /// `[u, v]` pairs.
        pairs: Vec<(u32, u32)>,
    },
    /// [`Target::step`].
    Step {
        /// Steps.
        count: u64,
    },
    /// [`Target::positions`]; the value is `[[x, y, z], ...]`.
    Positions,
    /// [`Target::set_params`].
    SetParams {
        /// The parameters.
        params: Params,
    },
    /// [`Target::reserve`].
    Reserve {
        /// Node capacity.
        #[serde(default)]
        nodes: u64,
        /// Edge capacity.
        #[serde(default)]
        edges: u64,
    },
    /// [`Target::shrink_to_fit`].
    ShrinkToFit,
    /// [`Target::sssp`]; the value is one distance per node.
    Sssp {
        /// Source node.
        source: u32,
    },
    /// [`Target::set_position_constraint`].
    SetPositionConstraint {
        /// The node.
        node: u32,
        /// Where it is pulled.
        target: Point,
        /// Spring constant.
        stiffness: f32,
    },
    /// [`Target::set_distance_constraint`].
    SetDistanceConstraint {
        /// One end.
        u: u32,
        /// The other end.
        v: u32,
        /// Target length.
        distance: f32,
    },
    /// [`Target::clear_constraints`].
    ClearConstraints,
    /// [`Target::counts`]; the value is a [`crate::Counts`].
    Counts,
    /// [`Target::device_bytes`]; the value is a number.
    DeviceBytes,
    /// [`Target::grid`]; the value is a [`crate::GridStage`] or `null`.
    Grid,
    /// [`Target::csr`]; the value is a [`crate::Csr`].
    Csr,
    /// [`Target::checkpoint`]; the value is the target's own JSON.
    Checkpoint,
    /// [`Target::restore`].
    Restore {
        /// A value `checkpoint` returned.
        state: Value,
    },
    /// [`Target::inject`].
    Inject {
        /// The fault.
        fault: EnvFault,
    },
    /// [`Target::injections_fired`]; the value is a number (`unsupported`: the target cannot
    /// tell).
    InjectionsFired,
    /// [`Target::velocities`]; the value is `[[x, y, z], ...]`.
    Velocities,
    /// [`Target::attributes`]; the value is a [`crate::Attributes`].
    Attributes,
    /// [`Target::buffers`]; the value is a list of [`crate::Buffer`].
    Buffers,
    /// The end: the target replies `ok` and exits with code 0.
    Shutdown,
}

/// Every operation name of this protocol version, as written in `"op"`.
pub const OPS: [&str; 27] = [
    "hello",
    "create",
    "add_nodes",
    "remove_nodes",
    "add_edges",
    "remove_edges",
    "step",
    "positions",
    "set_params",
    "reserve",
    "shrink_to_fit",
    "sssp",
    "set_position_constraint",
    "set_distance_constraint",
    "clear_constraints",
    "counts",
    "device_bytes",
    "grid",
    "csr",
    "checkpoint",
    "restore",
    "inject",
    "injections_fired",
    "velocities",
    "attributes",
    "buffers",
    "shutdown",
];

impl RequestBody {
    /// The `"op"` name.
    pub fn op(&self) -> &'static str {
        match self {
            RequestBody::Hello { .. } => "hello",
            RequestBody::Create { .. } => "create",
            RequestBody::AddNodes { .. } => "add_nodes",
            RequestBody::RemoveNodes { .. } => "remove_nodes",
            RequestBody::AddEdges { .. } => "add_edges",
            RequestBody::RemoveEdges { .. } => "remove_edges",
            RequestBody::Step { .. } => "step",
            RequestBody::Positions => "positions",
            RequestBody::SetParams { .. } => "set_params",
            RequestBody::Reserve { .. } => "reserve",
            RequestBody::ShrinkToFit => "shrink_to_fit",
            RequestBody::Sssp { .. } => "sssp",
            RequestBody::SetPositionConstraint { .. } => "set_position_constraint",
            RequestBody::SetDistanceConstraint { .. } => "set_distance_constraint",
            RequestBody::ClearConstraints => "clear_constraints",
            RequestBody::Counts => "counts",
            RequestBody::DeviceBytes => "device_bytes",
            RequestBody::Grid => "grid",
            RequestBody::Csr => "csr",
            RequestBody::Checkpoint => "checkpoint",
            RequestBody::Restore { .. } => "restore",
            RequestBody::Inject { .. } => "inject",
            RequestBody::InjectionsFired => "injections_fired",
            RequestBody::Velocities => "velocities",
            RequestBody::Attributes => "attributes",
            RequestBody::Buffers => "buffers",
            RequestBody::Shutdown => "shutdown",
        }
    }
}

/// One request: an id the reply repeats, and the operation.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Chosen by the driver, increasing; the reply carries it back.
    pub id: u64,
    /// The operation.
    pub body: RequestBody,
}

/// Why a request line could not be read; the reply to it carries the kind and this message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadRequest {
    /// The request's id, when it could be read.
    pub id: Option<u64>,
    /// `unsupported` for an op this version does not know, `rejected` otherwise.
    pub kind: ErrorKind,
    /// What is wrong.
    pub message: String,
}

impl Request {
    /// The request as one line of JSON (no newline).
    pub fn to_line(&self) -> String {
        let mut object = match serde_json::to_value(&self.body) {
            Ok(Value::Object(m)) => m,
            // Every body serializes to an object (the enum is internally tagged).
            _ => Map::new(),
        };
        object.insert("id".into(), Value::from(self.id));
        Value::Object(object).to_string()
    }

    /// Reads a request line.
    pub fn from_line(line: &str) -> Result<Request, BadRequest> {
        let bad = |id, kind, message: String| BadRequest { id, kind, message };
        let mut object = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(bad(
                    None,
                    ErrorKind::Rejected,
                    "a request is a JSON object".into(),
                ))
            }
            Err(e) => {
                return Err(bad(
                    None,
                    ErrorKind::Rejected,
                    format!("a request is not JSON: {e}"),
                ))
            }
        };
        let id = match object.remove("id") {
            Some(Value::Number(n)) if n.is_u64() => n.as_u64(),
            _ => {
                return Err(bad(
                    None,
                    ErrorKind::Rejected,
                    "a request needs an `id` (a non-negative integer)".into(),
                ))
            }
        };
        let op = object.get("op").and_then(Value::as_str).map(str::to_owned);
        match serde_json::from_value::<RequestBody>(Value::Object(object)) {
            Ok(body) => Ok(Request {
                id: id.unwrap_or(0),
                body,
            }),
            Err(e) => match op {
                Some(op) if !OPS.contains(&op.as_str()) => Err(bad(
                    id,
                    ErrorKind::Unsupported,
                    format!("unknown op `{op}` (this target speaks {PROTOCOL})"),
                )),
                _ => Err(bad(id, ErrorKind::Rejected, format!("bad request: {e}"))),
            },
        }
    }
}

/// The value of the reply to `hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The engine's name.
    pub name: String,
    /// The engine's version.
    pub version: String,
    /// The protocol the target speaks ([`PROTOCOL`]).
    pub protocol: String,
    /// The optional capabilities, by name (`"sssp"`, `"counts"`, ...). A driver ignores names it
    /// does not know.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// The kind of an error reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// Bad input refused cleanly, nothing changed.
    Rejected,
    /// The operation is not offered.
    Unsupported,
    /// The target failed: a defect.
    Internal,
}

/// The `"error"` of a reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// In plain words.
    pub message: String,
}

/// One reply: `{"id": n, "ok": value}` or `{"id": n, "error": {"kind": ..., "message": ...}}`.
/// `id` is `null` only in the reply to a line whose id could not be read.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// The request's id.
    pub id: Option<u64>,
    /// The outcome.
    pub outcome: std::result::Result<Value, WireError>,
}

impl Reply {
    /// A success.
    pub fn ok(id: u64, value: Value) -> Reply {
        Reply {
            id: Some(id),
            outcome: Ok(value),
        }
    }

    /// The reply line (no newline).
    pub fn to_line(&self) -> String {
        let mut object = Map::new();
        object.insert("id".into(), self.id.map_or(Value::Null, Value::from));
        match &self.outcome {
            Ok(v) => object.insert("ok".into(), v.clone()),
            Err(e) => object.insert(
                "error".into(),
                serde_json::to_value(e).unwrap_or(Value::Null),
            ),
        };
        Value::Object(object).to_string()
    }

    /// Reads a reply line; the error says in plain words what is wrong with it.
    pub fn from_line(line: &str) -> Result<Reply, String> {
        let short = || {
            let mut s: String = line.chars().take(120).collect();
            if s.len() < line.len() {
                s.push_str("...");
            }
            s
        };
        let mut object = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(m)) => m,
            _ => return Err(format!("the target wrote a line that is not a JSON reply on stdout: `{}` (its logs belong on stderr)", short())),
        };
        let id = match object.remove("id") {
            Some(Value::Number(n)) if n.is_u64() => n.as_u64(),
            Some(Value::Null) => None,
            _ => return Err(format!("a reply without a valid `id`: `{}`", short())),
        };
        let outcome = match (object.remove("ok"), object.remove("error")) {
            (Some(v), None) => Ok(v),
            (None, Some(e)) => Err(serde_json::from_value::<WireError>(e).map_err(|e| {
                format!(
                    "a reply's `error` is not {{\"kind\", \"message\"}} ({e}): `{}`",
                    short()
                )
            })?),
            _ => {
                return Err(format!(
                    "a reply needs exactly one of `ok` and `error`: `{}`",
                    short()
                ))
            }
        };
        Ok(Reply { id, outcome })
    }
}

impl From<&TargetError> for WireError {
    fn from(e: &TargetError) -> Self {
        let (kind, message) = match e {
            TargetError::Rejected(m) => (ErrorKind::Rejected, m.clone()),
            TargetError::Unsupported(m) => (ErrorKind::Unsupported, m.clone()),
            other => (ErrorKind::Internal, other.to_string()),
        };
        WireError { kind, message }
    }
}

impl From<WireError> for TargetError {
    fn from(e: WireError) -> Self {
        match e.kind {
            ErrorKind::Rejected => TargetError::Rejected(e.message),
            ErrorKind::Unsupported => TargetError::Unsupported(e.message),
            ErrorKind::Internal => TargetError::Internal(e.message),
        }
    }
}

/// Serializes a read-back's value (the types here always serialize).
fn value<T: Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Serves one request on `target`.
pub fn handle<T: Target + ?Sized>(target: &mut T, body: RequestBody) -> Result<Value, TargetError> {
    let null = |r: Result<(), TargetError>| r.map(|()| Value::Null);
    match body {
        RequestBody::Hello { protocol } => {
            if protocol != PROTOCOL {
                return Err(TargetError::Rejected(format!(
                    "this target speaks {PROTOCOL}, not {protocol}"
                )));
            }
            let info = target.info();
            Ok(value(Hello {
                name: info.name,
                version: info.version,
                protocol: PROTOCOL.into(),
                capabilities: info.capabilities.names(),
            }))
        }
        RequestBody::Create { graph, params } => null(target.create(&graph, params.as_ref())),
        RequestBody::AddNodes { count, positions } => {
            null(target.add_nodes(count, positions.as_deref()))
        }
        RequestBody::RemoveNodes { ids } => null(target.remove_nodes(&ids)),
        RequestBody::AddEdges { edges } => null(target.add_edges(&edges)),
        RequestBody::RemoveEdges { pairs } => null(target.remove_edges(&pairs)),
        RequestBody::Step { count } => null(target.step(count)),
        RequestBody::Positions => {
            let p = target.positions()?;
            Ok(wire::points::serialize(&p, serde_json::value::Serializer).unwrap_or(Value::Null))
        }
        RequestBody::SetParams { params } => null(target.set_params(&params)),
        RequestBody::Reserve { nodes, edges } => null(target.reserve(nodes, edges)),
        RequestBody::ShrinkToFit => null(target.shrink_to_fit()),
        RequestBody::Sssp { source } => {
            let d = target.sssp(source)?;
            Ok(wire::floats::serialize(&d, serde_json::value::Serializer).unwrap_or(Value::Null))
        }
        RequestBody::SetPositionConstraint {
            node,
            target: to,
            stiffness,
        } => null(target.set_position_constraint(node, to, stiffness)),
        RequestBody::SetDistanceConstraint { u, v, distance } => {
            null(target.set_distance_constraint(u, v, distance))
        }
        RequestBody::ClearConstraints => null(target.clear_constraints()),
        RequestBody::Counts => target.counts().map(value),
        RequestBody::DeviceBytes => target.device_bytes().map(value),
        RequestBody::Grid => target.grid().map(value),
        RequestBody::Csr => target.csr().map(value),
        RequestBody::Checkpoint => target.checkpoint(),
        RequestBody::Restore { state } => null(target.restore(&state)),
        RequestBody::Inject { fault } => null(target.inject(&fault)),
        RequestBody::InjectionsFired => target.injections_fired().map(value),
        RequestBody::Velocities => {
            let v = target.velocities()?;
            Ok(wire::points::serialize(&v, serde_json::value::Serializer).unwrap_or(Value::Null))
        }
        RequestBody::Attributes => target.attributes().map(value),
        RequestBody::Buffers => target.buffers().map(value),
        RequestBody::Shutdown => Ok(Value::Null),
    }
}

/// Serves requests read from `input` on `target`, writing replies to `output`, until a `shutdown`
/// request (answered first) or the end of `input`. A line that is not a request gets an error
/// reply and serving goes on. Panics of the target are not caught: a target that panics dies, and
/// the driver reports how.
pub fn serve<T: Target + ?Sized>(
    target: &mut T,
    input: impl BufRead,
    mut output: impl Write,
) -> std::io::Result<()> {
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let (reply, last) = match Request::from_line(&line) {
            Ok(request) => {
                let last = request.body == RequestBody::Shutdown;
                let outcome = handle(target, request.body).map_err(|e| WireError::from(&e));
                (
                    Reply {
                        id: Some(request.id),
                        outcome,
                    },
                    last,
                )
            }
            Err(bad) => (
                Reply {
                    id: bad.id,
                    outcome: Err(WireError {
                        kind: bad.kind,
                        message: bad.message,
                    }),
                },
                false,
            ),
        };
        writeln!(output, "{}", reply.to_line())?;
        output.flush()?;
        if last {
            break;
        }
    }
    Ok(())
}

/// Makes `target` speak `forcefield-target/1` on this process's stdin and stdout: the whole `main`
/// of an embedded target. Returns when the driver says `shutdown` or closes stdin; an I/O error
/// (the driver went away) is returned.
pub fn serve_stdio<T: Target>(mut target: T) -> std::io::Result<()> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    serve(&mut target, stdin.lock(), stdout.lock())
}
