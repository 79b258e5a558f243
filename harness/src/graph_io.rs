/*!
Reading the files a user hands the harness: graphs (edge lists, Matrix Market, JSON), simulation
parameters (JSON) and node labels.

Responsible for turning bytes into a validated [`GraphSpec`], [`SimParams`] or label table, with errors
that name the file and the line, and for refusing absurd sizes *before* anything is allocated: an
edge list naming node 10^12, or a Matrix Market header claiming 10^12 rows, is an error, never an OOM.

Formats, chosen by extension ([`GraphFormat::from_path`]):

* **edge list** (any other extension): one `u v [w]` per line, ids from 0, node count = largest id + 1;
  blank lines and lines starting with `#` or `%` are skipped.
* **Matrix Market** (`.mtx`): `%%MatrixMarket matrix coordinate real|integer|pattern general|symmetric`,
  a size line `rows cols nnz`, then `nnz` 1-based entries `i j [value]`; node count = max(rows, cols),
  `pattern` entries weigh 1. Every entry is an undirected edge; in a `general` matrix, `(i, j)` and
  `(j, i)` are the same edge and only the first is kept, so a symmetric matrix stored in full is not
  laid out with doubled springs.
* **JSON** (`.json`): the serde form of [`GraphSpec`].
*/

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use forcefield::{Edge, GraphError, GraphSpec, ParamError, SimParams};

use crate::input::{
    escape_control, open_bounded, BoundedReader, MAX_INPUT_EDGES, MAX_INPUT_NODES, MAX_PARAMS_BYTES,
};

/// Largest graph or label file read, in bytes: an edge list at [`MAX_INPUT_EDGES`] with weights
/// fits well under it. A regular file over it is refused before reading, anything else (a pipe,
/// `/dev/zero`) while reading.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// Longest line of an edge list, Matrix Market or label file: a line is two ids and a number, so
/// a longer one is junk, and reading it whole could take all the memory of a line-less stream.
pub const MAX_LINE_BYTES: usize = 4096;

/// An input file could not be read or is not what it should be.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening or reading failed (missing file, permissions), or the file passed its size limit or
    /// holds binary data ([`crate::input::InputError`] inside).
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The content is malformed or invalid.
    #[error("{}", path.display())]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: FormatError,
    },
}

/// What is wrong with the content of an input file. Line numbers count from 1.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// A line that does not have the expected shape.
    #[error("line {line}: expected {expected}, got `{got}`")]
    Syntax {
        /// The line.
        line: usize,
        /// What the line should look like.
        expected: &'static str,
        /// The line as written (trimmed, shortened when long).
        got: String,
    },
    /// A weight that is NaN, infinite or negative.
    #[error("line {line}: invalid weight `{text}` (weights must be finite and >= 0)")]
    BadWeight {
        /// The line.
        line: usize,
        /// The weight as written.
        text: String,
    },
    /// A node id at or above the engine's node limit.
    #[error("line {line}: node id {id} is too large (ids must be below {limit})")]
    IdTooLarge {
        /// The line.
        line: usize,
        /// The id as written (it may not fit any integer type).
        id: String,
        /// The exclusive limit.
        limit: u32,
    },
    /// An entry or label naming a node outside the graph.
    #[error("line {line}: node id {id} out of range (the graph has {num_nodes} nodes)")]
    IdOutOfRange {
        /// The line.
        line: usize,
        /// The id, as the file numbers it.
        id: u64,
        /// Nodes in the graph.
        num_nodes: u64,
    },
    /// More edges than the engine accepts.
    #[error("line {line}: more than {limit} edges")]
    TooManyEdges {
        /// The line of the first edge over the limit.
        line: usize,
        /// The limit.
        limit: u32,
    },
    /// A line longer than [`MAX_LINE_BYTES`].
    #[error("line {line}: longer than {limit} bytes")]
    LineTooLong {
        /// The line.
        line: usize,
        /// The limit.
        limit: usize,
    },
    /// An edge list without a single edge (its node count is unknowable).
    #[error("no edges")]
    NoEdges,
    /// A Matrix Market header this reader does not accept.
    #[error("line {line}: unsupported Matrix Market header `{got}` (expected `%%MatrixMarket matrix coordinate real|integer|pattern general|symmetric`)")]
    MatrixMarketHeader {
        /// The line.
        line: usize,
        /// The header as written.
        got: String,
    },
    /// A Matrix Market size line whose counts exceed the engine's limits.
    #[error("line {line}: {what} {count} exceeds the limit of {limit}")]
    SizeTooLarge {
        /// The line.
        line: usize,
        /// What is counted.
        what: &'static str,
        /// The count as declared.
        count: u64,
        /// The limit.
        limit: u64,
    },
    /// A Matrix Market file whose entry count differs from its size line.
    #[error("{found} entries found, but the size line declares {declared}")]
    EntryCount {
        /// Entries present.
        found: u64,
        /// Entries declared.
        declared: u64,
    },
    /// A node id that appears twice in a label file.
    #[error("line {line}: node {id} is labelled twice")]
    DuplicateLabel {
        /// The line.
        line: usize,
        /// The node.
        id: u32,
    },
    /// Malformed JSON, or JSON of the wrong shape (serde's message quotes names from the input,
    /// hence the escaping).
    #[error("{}", escape_control(&.0.to_string()))]
    Json(#[from] serde_json::Error),
    /// A well-formed graph that the engine would reject.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// Well-formed parameters that the engine would reject.
    #[error(transparent)]
    Params(#[from] ParamError),
}

/// The graph file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    /// `u v [w]` per line.
    EdgeList,
    /// Matrix Market coordinate format.
    MatrixMarket,
    /// The serde form of [`GraphSpec`].
    Json,
}

impl GraphFormat {
    /// The format a file's extension names: `.mtx`, `.json`, otherwise an edge list.
    pub fn from_path(path: &Path) -> Self {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("mtx") => GraphFormat::MatrixMarket,
            Some("json") => GraphFormat::Json,
            _ => GraphFormat::EdgeList,
        }
    }
}

/// Reads and validates the graph in `path`, in the format its extension names.
pub fn read_graph(path: &Path) -> Result<GraphSpec, ReadError> {
    let reader = open_limited(path, MAX_FILE_BYTES, "graph")?;
    let parsed = match GraphFormat::from_path(path) {
        GraphFormat::EdgeList => parse_edge_list(reader),
        GraphFormat::MatrixMarket => parse_matrix_market(reader),
        GraphFormat::Json => parse_json_graph(reader),
    };
    parsed.map_err(|e| content_error(path, e))
}

/// Reads and validates simulation parameters from a JSON file (fields not named take defaults).
pub fn read_params(path: &Path) -> Result<SimParams, ReadError> {
    let reader = open_limited(path, MAX_PARAMS_BYTES, "params file")?;
    parse_params(reader).map_err(|e| content_error(path, e))
}

/// Reads a label file (`id class` per line, `#`/`%` comments) for a graph of `num_nodes` nodes.
/// Classes are arbitrary tokens, numbered in order of first appearance; unlabelled nodes get `None`.
pub fn read_labels(path: &Path, num_nodes: u32) -> Result<Vec<Option<usize>>, ReadError> {
    let reader = open_limited(path, MAX_FILE_BYTES, "label file")?;
    parse_labels(reader, num_nodes).map_err(|e| content_error(path, e))
}

/// An I/O failure part-way through a file is still an I/O error of that file, not a format error.
fn content_error(path: &Path, e: ParseFailure) -> ReadError {
    match e {
        ParseFailure::Io(source) => ReadError::Io {
            path: path.to_path_buf(),
            source,
        },
        ParseFailure::Format(source) => ReadError::Content {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Opens `path` for reading at most `limit` bytes (see [`crate::input::BoundedReader`]).
fn open_limited(
    path: &Path,
    limit: u64,
    what: &str,
) -> Result<BufReader<BoundedReader<File>>, ReadError> {
    let file = open_bounded(path, limit, what).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(BufReader::new(file))
}

/// A parser's failure: the reader failed, or the content is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ParseFailure {
    /// The underlying reader failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The content is wrong.
    #[error(transparent)]
    Format(#[from] FormatError),
}

impl From<GraphError> for ParseFailure {
    fn from(e: GraphError) -> Self {
        ParseFailure::Format(e.into())
    }
}

impl From<ParamError> for ParseFailure {
    fn from(e: ParamError) -> Self {
        ParseFailure::Format(e.into())
    }
}

/// Numbered lines of `reader`, each without its line ending; invalid UTF-8 is replaced, so that it
/// shows up as a syntax error on its line rather than as an I/O error. A line longer than
/// [`MAX_LINE_BYTES`] is an error as soon as its first `MAX_LINE_BYTES + 1` bytes are read.
fn numbered_lines(
    mut reader: impl BufRead,
) -> impl Iterator<Item = Result<(usize, String), ParseFailure>> {
    let mut line_no = 0usize;
    let mut buf = Vec::new();
    std::iter::from_fn(move || {
        buf.clear();
        let mut bounded = (&mut reader).take(MAX_LINE_BYTES as u64 + 1);
        match bounded.read_until(b'\n', &mut buf) {
            Ok(0) => None,
            Ok(_) => {
                line_no += 1;
                if buf.len() > MAX_LINE_BYTES && buf.last() != Some(&b'\n') {
                    return Some(Err(FormatError::LineTooLong {
                        line: line_no,
                        limit: MAX_LINE_BYTES,
                    }
                    .into()));
                }
                let text = String::from_utf8_lossy(&buf).trim().to_string();
                Some(Ok((line_no, text)))
            }
            Err(e) => Some(Err(ParseFailure::Io(e))),
        }
    })
}

/// Whether a (trimmed) line carries no data.
fn is_skipped(line: &str) -> bool {
    line.is_empty() || line.starts_with('#') || line.starts_with('%')
}

/// The line as quoted in an error: long lines are cut so that the error stays one readable line.
/// Control characters are escaped ([`escape_control`]), so a quoted line cannot drive the terminal.
fn quote(line: &str) -> String {
    const MAX: usize = 60;
    if line.chars().count() <= MAX {
        escape_control(line)
    } else {
        let head: String = line.chars().take(MAX).collect();
        format!("{}...", escape_control(&head))
    }
}

/// A node id token: non-negative decimal integer below `limit`. Digit strings too large for any
/// integer are "too large", not junk; anything else is `None` (a syntax error for the caller).
fn parse_id(token: &str, line: usize, limit: u64) -> Result<Option<u64>, FormatError> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match token.parse::<u64>() {
        Ok(id) if id < limit => Ok(Some(id)),
        _ => Err(FormatError::IdTooLarge {
            line,
            id: token.to_string(),
            limit: MAX_INPUT_NODES,
        }),
    }
}

/// A weight token: a finite, non-negative number (`nan`, `inf` and overflow to infinity are
/// rejected). `None` when it is not a number at all.
fn parse_weight(token: &str, line: usize) -> Result<Option<f32>, FormatError> {
    match token.parse::<f32>() {
        Ok(w) if w.is_finite() && w >= 0.0 => Ok(Some(w)),
        Ok(_) => Err(FormatError::BadWeight {
            line,
            text: token.to_string(),
        }),
        Err(_) => Ok(None),
    }
}

/// Parses an edge list (see the module docs).
pub fn parse_edge_list(reader: impl BufRead) -> Result<GraphSpec, ParseFailure> {
    const EXPECTED: &str = "`u v [w]`";
    let mut edges = Vec::new();
    let mut max_id = 0u64;
    for item in numbered_lines(reader) {
        let (line, text) = item?;
        if is_skipped(&text) {
            continue;
        }
        let syntax = || FormatError::Syntax {
            line,
            expected: EXPECTED,
            got: quote(&text),
        };
        let tokens: Vec<&str> = text.split_whitespace().collect();
        if !(2..=3).contains(&tokens.len()) {
            return Err(syntax().into());
        }
        let u = parse_id(tokens[0], line, MAX_INPUT_NODES as u64)?.ok_or_else(syntax)?;
        let v = parse_id(tokens[1], line, MAX_INPUT_NODES as u64)?.ok_or_else(syntax)?;
        let w = match tokens.get(2) {
            Some(t) => parse_weight(t, line)?.ok_or_else(syntax)?,
            None => 1.0,
        };
        if edges.len() >= MAX_INPUT_EDGES as usize {
            return Err(FormatError::TooManyEdges {
                line,
                limit: MAX_INPUT_EDGES,
            }
            .into());
        }
        max_id = max_id.max(u).max(v);
        // Ids are below MAX_INPUT_NODES (a u32), checked by parse_id.
        edges.push(Edge {
            u: u as u32,
            v: v as u32,
            w,
        });
    }
    if edges.is_empty() {
        return Err(FormatError::NoEdges.into());
    }
    let graph = GraphSpec {
        num_nodes: (max_id + 1) as u32,
        edges,
        positions: None,
    };
    graph.validate()?;
    Ok(graph)
}

/// What a Matrix Market entry carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MmField {
    /// `real` or `integer`: a value per entry.
    Value,
    /// `pattern`: no value; weight 1.
    Pattern,
}

/// Parses a Matrix Market coordinate file (see the module docs).
pub fn parse_matrix_market(reader: impl BufRead) -> Result<GraphSpec, ParseFailure> {
    const ENTRY: &str = "`i j value`";
    const ENTRY_PATTERN: &str = "`i j`";
    let mut lines = numbered_lines(reader);

    let (line, header) = match lines.next() {
        Some(item) => item?,
        None => {
            return Err(FormatError::MatrixMarketHeader {
                line: 1,
                got: String::new(),
            }
            .into())
        }
    };
    let bad_header = || FormatError::MatrixMarketHeader {
        line,
        got: quote(&header),
    };
    // Matrix Market keywords are case-insensitive.
    let lowered: Vec<String> = header
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let words: Vec<&str> = lowered.iter().map(String::as_str).collect();
    let (field, symmetric) = match words.as_slice() {
        ["%%matrixmarket", "matrix", "coordinate", field, symmetry] => {
            let field = match *field {
                "real" | "integer" => MmField::Value,
                "pattern" => MmField::Pattern,
                _ => return Err(bad_header().into()),
            };
            let symmetric = match *symmetry {
                "general" => false,
                "symmetric" => true,
                _ => return Err(bad_header().into()),
            };
            (field, symmetric)
        }
        _ => return Err(bad_header().into()),
    };

    // Size line: the first line that is neither blank nor a comment.
    let mut size = None;
    for item in lines.by_ref() {
        let (line, text) = item?;
        if !is_skipped(&text) {
            size = Some((line, text));
            break;
        }
    }
    let Some((size_line, size_text)) = size else {
        return Err(FormatError::Syntax {
            line: line + 1,
            expected: "a size line `rows cols nnz`",
            got: String::new(),
        }
        .into());
    };
    let counts: Vec<u64> = size_text
        .split_whitespace()
        .map(|t| t.parse::<u64>())
        .collect::<Result<_, _>>()
        .ok()
        .filter(|c: &Vec<u64>| c.len() == 3)
        .ok_or_else(|| FormatError::Syntax {
            line: size_line,
            expected: "a size line `rows cols nnz`",
            got: quote(&size_text),
        })?;
    let (rows, cols, nnz) = (counts[0], counts[1], counts[2]);
    let num_nodes = rows.max(cols);
    for (what, count, limit) in [
        ("node count", num_nodes, MAX_INPUT_NODES as u64),
        ("entry count", nnz, MAX_INPUT_EDGES as u64),
    ] {
        if count > limit {
            return Err(FormatError::SizeTooLarge {
                line: size_line,
                what,
                count,
                limit,
            }
            .into());
        }
    }

    let expected = match field {
        MmField::Value => ENTRY,
        MmField::Pattern => ENTRY_PATTERN,
    };
    let mut edges = Vec::new();
    // Only a general matrix can hold both (i, j) and (j, i); remember pairs to keep one of them.
    let mut seen = std::collections::HashSet::new();
    let mut found = 0u64;
    for item in lines {
        let (line, text) = item?;
        if is_skipped(&text) {
            continue;
        }
        found += 1;
        if found > nnz {
            return Err(FormatError::EntryCount {
                found,
                declared: nnz,
            }
            .into());
        }
        let syntax = || FormatError::Syntax {
            line,
            expected,
            got: quote(&text),
        };
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let arity = if field == MmField::Pattern { 2 } else { 3 };
        if tokens.len() != arity {
            return Err(syntax().into());
        }
        let mut ends = [0u32; 2];
        for (end, (token, bound)) in ends.iter_mut().zip([(tokens[0], rows), (tokens[1], cols)]) {
            // 1-based: 0 and anything above the declared dimension are out of range.
            let id = parse_id(token, line, u64::MAX)?.ok_or_else(syntax)?;
            if id == 0 || id > bound {
                return Err(FormatError::IdOutOfRange {
                    line,
                    id,
                    num_nodes: bound,
                }
                .into());
            }
            *end = (id - 1) as u32;
        }
        let w = match field {
            MmField::Pattern => 1.0,
            MmField::Value => parse_weight(tokens[2], line)?.ok_or_else(syntax)?,
        };
        let [u, v] = ends;
        if !symmetric && !seen.insert((u.min(v), u.max(v))) {
            continue;
        }
        edges.push(Edge { u, v, w });
    }
    if found != nnz {
        return Err(FormatError::EntryCount {
            found,
            declared: nnz,
        }
        .into());
    }
    let graph = GraphSpec {
        num_nodes: num_nodes as u32,
        edges,
        positions: None,
    };
    graph.validate()?;
    Ok(graph)
}

/// Parses the JSON form of a [`GraphSpec`] and validates it.
pub fn parse_json_graph(reader: impl Read) -> Result<GraphSpec, ParseFailure> {
    let graph: GraphSpec = serde_json::from_reader(reader).map_err(json_failure)?;
    for (what, count, limit) in [
        ("node count", graph.num_nodes as u64, MAX_INPUT_NODES as u64),
        (
            "edge count",
            graph.edges.len() as u64,
            MAX_INPUT_EDGES as u64,
        ),
    ] {
        if count > limit {
            return Err(GraphError::TooLarge { what, count, limit }.into());
        }
    }
    graph.validate()?;
    Ok(graph)
}

/// Parses [`SimParams`] from JSON and validates them.
pub fn parse_params(reader: impl Read) -> Result<SimParams, ParseFailure> {
    let params: SimParams = serde_json::from_reader(reader).map_err(json_failure)?;
    params.validate()?;
    Ok(params)
}

/// serde_json reports reader failures as its own errors; keep them I/O errors.
fn json_failure(e: serde_json::Error) -> ParseFailure {
    if e.is_io() {
        ParseFailure::Io(e.into())
    } else {
        ParseFailure::Format(FormatError::Json(e))
    }
}

/// Parses a label file (see [`read_labels`]).
pub fn parse_labels(
    reader: impl BufRead,
    num_nodes: u32,
) -> Result<Vec<Option<usize>>, ParseFailure> {
    let mut labels = vec![None; num_nodes as usize];
    let mut classes: HashMap<String, usize> = HashMap::new();
    for item in numbered_lines(reader) {
        let (line, text) = item?;
        if is_skipped(&text) {
            continue;
        }
        let syntax = || FormatError::Syntax {
            line,
            expected: "`id class`",
            got: quote(&text),
        };
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let [id, class] = tokens.as_slice() else {
            return Err(syntax().into());
        };
        let id = parse_id(id, line, MAX_INPUT_NODES as u64)?.ok_or_else(syntax)?;
        let slot = labels
            .get_mut(id as usize)
            .ok_or(FormatError::IdOutOfRange {
                line,
                id,
                num_nodes: num_nodes as u64,
            })?;
        if slot.is_some() {
            return Err(FormatError::DuplicateLabel {
                line,
                id: id as u32,
            }
            .into());
        }
        let next = classes.len();
        *slot = Some(*classes.entry(class.to_string()).or_insert(next));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge_list(text: &str) -> Result<GraphSpec, String> {
        parse_edge_list(text.as_bytes()).map_err(|e| e.to_string())
    }

    fn mtx(text: &str) -> Result<GraphSpec, String> {
        parse_matrix_market(text.as_bytes()).map_err(|e| e.to_string())
    }

    fn json(text: &str) -> Result<GraphSpec, String> {
        parse_json_graph(text.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn edge_list_reads_ids_weights_and_skips_comments() {
        let g = edge_list("# header\n% other comment\n\n0 1\n  1 4 2.5 \n3\t0\n").unwrap();
        assert_eq!(g.num_nodes, 5);
        assert_eq!(
            g.edges,
            vec![
                Edge::new(0, 1),
                Edge { u: 1, v: 4, w: 2.5 },
                Edge::new(3, 0)
            ]
        );
        assert_eq!(g.positions, None);
    }

    #[test]
    fn edge_list_junk_line_names_line_and_text() {
        let e = edge_list("0 1\n1 2\nfoo bar\n").unwrap_err();
        assert_eq!(e, "line 3: expected `u v [w]`, got `foo bar`");
        assert!(edge_list("0 1 1 1\n")
            .unwrap_err()
            .starts_with("line 1: expected"));
        assert!(edge_list("0\n")
            .unwrap_err()
            .starts_with("line 1: expected"));
        assert!(edge_list("-1 2\n")
            .unwrap_err()
            .starts_with("line 1: expected"));
        assert!(edge_list("0 1 heavy\n")
            .unwrap_err()
            .starts_with("line 1: expected"));
    }

    #[test]
    fn edge_list_rejects_bad_weights() {
        for w in ["nan", "NaN", "inf", "-inf", "-1", "1e39"] {
            let e = edge_list(&format!("0 1\n1 2 {w}\n")).unwrap_err();
            assert_eq!(
                e,
                format!("line 2: invalid weight `{w}` (weights must be finite and >= 0)")
            );
        }
        assert_eq!(edge_list("0 1 0\n").unwrap().edges[0].w, 0.0);
    }

    #[test]
    fn edge_list_rejects_ids_at_the_limit_without_allocating() {
        let limit = MAX_INPUT_NODES;
        assert_eq!(
            edge_list(&format!("0 {}\n", limit - 1)).unwrap().num_nodes,
            limit
        );
        let e = edge_list(&format!("0 {limit}\n")).unwrap_err();
        assert_eq!(
            e,
            format!("line 1: node id {limit} is too large (ids must be below {limit})")
        );
        let e = edge_list("1000000000000 0\n").unwrap_err();
        assert!(e.contains("node id 1000000000000 is too large"), "{e}");
        let e = edge_list("99999999999999999999999999 0\n").unwrap_err();
        assert!(e.contains("is too large"), "{e}");
    }

    #[test]
    fn edge_list_without_edges_is_an_error() {
        assert_eq!(edge_list("").unwrap_err(), "no edges");
        assert_eq!(edge_list("# only\n\n% comments\n").unwrap_err(), "no edges");
    }

    #[test]
    fn missing_file_is_an_io_error_naming_the_path() {
        let e = read_graph(Path::new("no/such/graph.edges")).unwrap_err();
        assert!(matches!(e, ReadError::Io { .. }));
        assert_eq!(e.to_string(), "cannot read no/such/graph.edges");
    }

    #[test]
    fn format_follows_extension() {
        assert_eq!(
            GraphFormat::from_path(Path::new("a.mtx")),
            GraphFormat::MatrixMarket
        );
        assert_eq!(
            GraphFormat::from_path(Path::new("a.MTX")),
            GraphFormat::MatrixMarket
        );
        assert_eq!(
            GraphFormat::from_path(Path::new("a.json")),
            GraphFormat::Json
        );
        assert_eq!(
            GraphFormat::from_path(Path::new("a.edges")),
            GraphFormat::EdgeList
        );
        assert_eq!(
            GraphFormat::from_path(Path::new("a")),
            GraphFormat::EdgeList
        );
    }

    #[test]
    fn read_graph_dispatches_and_wraps_errors_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let mtx_path = dir.path().join("g.mtx");
        std::fs::write(
            &mtx_path,
            "%%MatrixMarket matrix coordinate pattern symmetric\n3 3 2\n2 1\n3 2\n",
        )
        .unwrap();
        assert_eq!(read_graph(&mtx_path).unwrap().edges.len(), 2);
        let bad = dir.path().join("bad.edges");
        std::fs::write(&bad, "0 1\nx\n").unwrap();
        let e = read_graph(&bad).unwrap_err();
        let ReadError::Content { path, source } = &e else {
            panic!("expected a content error, got {e:?}");
        };
        assert_eq!(path, &bad);
        assert_eq!(source.to_string(), "line 2: expected `u v [w]`, got `x`");
    }

    #[test]
    fn matrix_market_symmetric_real() {
        let g = mtx("%%MatrixMarket matrix coordinate real symmetric\n% comment\n\n4 4 3\n1 1 2.0\n2 1 0.5\n4 3 1\n")
            .unwrap();
        assert_eq!(g.num_nodes, 4);
        assert_eq!(
            g.edges,
            vec![
                Edge { u: 0, v: 0, w: 2.0 },
                Edge { u: 1, v: 0, w: 0.5 },
                Edge { u: 3, v: 2, w: 1.0 }
            ]
        );
    }

    #[test]
    fn matrix_market_general_keeps_one_edge_per_pair_and_rectangular_sizes() {
        let g =
            mtx("%%MatrixMarket matrix coordinate integer general\n2 5 3\n1 2 3\n2 1 7\n2 5 1\n")
                .unwrap();
        assert_eq!(g.num_nodes, 5);
        assert_eq!(
            g.edges,
            vec![Edge { u: 0, v: 1, w: 3.0 }, Edge { u: 1, v: 4, w: 1.0 }]
        );
    }

    #[test]
    fn matrix_market_pattern_weighs_one() {
        let g = mtx("%%MatrixMarket matrix coordinate pattern general\n3 3 2\n1 2\n3 1\n").unwrap();
        assert!(g.edges.iter().all(|e| e.w == 1.0));
        assert_eq!(g.edges.len(), 2);
        // A pattern entry with a value is malformed.
        let e =
            mtx("%%MatrixMarket matrix coordinate pattern general\n3 3 1\n1 2 5\n").unwrap_err();
        assert_eq!(e, "line 3: expected `i j`, got `1 2 5`");
    }

    #[test]
    fn matrix_market_header_errors() {
        for header in [
            "",
            "0 1",
            "%%MatrixMarket matrix array real general",
            "%%MatrixMarket matrix coordinate complex general",
            "%%MatrixMarket matrix coordinate real hermitian",
            "%%MatrixMarket matrix coordinate real skew-symmetric",
        ] {
            let e = mtx(&format!("{header}\n1 1 0\n")).unwrap_err();
            assert!(
                e.starts_with("line 1: unsupported Matrix Market header"),
                "{header}: {e}"
            );
        }
    }

    #[test]
    fn matrix_market_size_errors_come_before_allocation() {
        let head = "%%MatrixMarket matrix coordinate real general\n";
        let e = mtx(&format!("{head}1000000000000 1000000000000 1\n1 2 1\n")).unwrap_err();
        assert_eq!(
            e,
            format!("line 2: node count 1000000000000 exceeds the limit of {MAX_INPUT_NODES}")
        );
        let e = mtx(&format!("{head}3 3 1000000000000\n")).unwrap_err();
        assert!(
            e.starts_with("line 2: entry count 1000000000000 exceeds"),
            "{e}"
        );
        let e = mtx(&format!("{head}3 3\n")).unwrap_err();
        assert_eq!(e, "line 2: expected a size line `rows cols nnz`, got `3 3`");
        let e = mtx(head).unwrap_err();
        assert_eq!(e, "line 2: expected a size line `rows cols nnz`, got ``");
    }

    #[test]
    fn matrix_market_entry_errors() {
        let head = "%%MatrixMarket matrix coordinate real general\n3 2 1\n";
        let e = mtx(&format!("{head}4 1 1\n")).unwrap_err();
        assert_eq!(e, "line 3: node id 4 out of range (the graph has 3 nodes)");
        let e = mtx(&format!("{head}1 3 1\n")).unwrap_err();
        assert_eq!(e, "line 3: node id 3 out of range (the graph has 2 nodes)");
        let e = mtx(&format!("{head}0 1 1\n")).unwrap_err();
        assert_eq!(e, "line 3: node id 0 out of range (the graph has 3 nodes)");
        let e = mtx(&format!("{head}1 2 nan\n")).unwrap_err();
        assert!(e.starts_with("line 3: invalid weight `nan`"), "{e}");
        let e = mtx(&format!("{head}1 2\n")).unwrap_err();
        assert_eq!(e, "line 3: expected `i j value`, got `1 2`");
        let e = mtx(&format!("{head}1 2 1\n2 1 1\n")).unwrap_err();
        assert_eq!(e, "2 entries found, but the size line declares 1");
        let e = mtx("%%MatrixMarket matrix coordinate real general\n3 3 2\n1 2 1\n").unwrap_err();
        assert_eq!(e, "1 entries found, but the size line declares 2");
    }

    #[test]
    fn json_graph_round_trips_the_serde_form() {
        let g = json(r#"{"num_nodes": 3, "edges": [{"u":0,"v":1,"w":1.0},{"u":1,"v":2,"w":0.5}], "positions": null}"#)
            .unwrap();
        assert_eq!(g.num_nodes, 3);
        assert_eq!(g.edges[1], Edge { u: 1, v: 2, w: 0.5 });
        let with_pos =
            json(r#"{"num_nodes": 2, "edges": [], "positions": [[0,0,0],[1,2,3]]}"#).unwrap();
        assert_eq!(with_pos.positions, Some(vec![[0.0; 3], [1.0, 2.0, 3.0]]));
    }

    #[test]
    fn json_graph_errors() {
        let e = json(r#"{"num_nodes": 3, "edges": [{"u":0,"v":3,"w":1.0}]}"#).unwrap_err();
        assert_eq!(e, "node id 3 out of range (the graph has 3 nodes)");
        let e = json(r#"{"num_nodes": 3, "edges": [], "extra": 1}"#).unwrap_err();
        assert!(e.contains("unknown field `extra`"), "{e}");
        let e = json(r#"{"num_nodes": 3, "edges": [{"u":0,"v":1,"w":-2.0}]}"#).unwrap_err();
        assert!(e.contains("invalid weight -2"), "{e}");
        let e = json(r#"{"num_nodes": 4000000000, "edges": []}"#).unwrap_err();
        assert!(e.contains("exceeds the limit"), "{e}");
        let e = json(r#"{"num_nodes": 2, "edges": [], "positions": [[0,0,0]]}"#).unwrap_err();
        assert_eq!(e, "1 positions given for 2 nodes");
        let e = json("{\"num_nodes\": 3,\n  \"edges\": [oops]}").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn params_read_defaults_and_validate() {
        let p = parse_params(r#"{"spring_k": 0.5, "seed": 9}"#.as_bytes()).unwrap();
        assert_eq!(p.spring_k, 0.5);
        assert_eq!(p.seed, 9);
        assert_eq!(p.dt, SimParams::default().dt);
        let e = parse_params(r#"{"grid_cell_size": -1}"#.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid parameter `grid_cell_size`"), "{e}");
        let e = parse_params(r#"{"no_such": 1}"#.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `no_such`"), "{e}");
    }

    #[test]
    fn labels_number_classes_by_first_appearance() {
        let l = parse_labels("# c\n2 red\n0 blue\n3 red\n".as_bytes(), 5).unwrap();
        assert_eq!(l, vec![Some(1), None, Some(0), Some(0), None]);
        let e = parse_labels("7 a\n".as_bytes(), 5).unwrap_err().to_string();
        assert_eq!(e, "line 1: node id 7 out of range (the graph has 5 nodes)");
        let e = parse_labels("1 a\n1 b\n".as_bytes(), 5)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "line 2: node 1 is labelled twice");
        let e = parse_labels("1\n".as_bytes(), 5).unwrap_err().to_string();
        assert_eq!(e, "line 1: expected `id class`, got `1`");
    }

    #[test]
    fn long_junk_lines_are_shortened() {
        let long = "x".repeat(500);
        let e = edge_list(&long).unwrap_err();
        assert!(e.len() < 120, "{e}");
        assert!(e.ends_with("...`"), "{e}");
    }
}
