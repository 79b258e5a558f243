/*!
What compute-sanitizer reports, read back: the `--xml --save` file as [`SanitizerRecord`]s
([`parse_xml`], [`read_xml`]), the text it prints as a [`TextReport`] ([`parse_text`]: only the
text carries the distance to the nearest allocation and the true error totals), and a finding's
name ([`signature_for`]: `sanitizer:<tool>-<error>:<kernel>`). Pure functions over text, tested
on real output saved from the GPU machine; running the tool is
[`crate::sanitizers::compute_sanitizer`].
*/

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sanitizers::compute_sanitizer::{Tool, MAX_READ_BYTES};

// ------------------------------------------------------------------------------------------------
// Records: the XML
// ------------------------------------------------------------------------------------------------

/// What a record reports, as the XML's `<kind>` names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum RecordKind {
    /// memcheck: an access error attributed to a kernel, thread and source line.
    Precise,
    /// A failing CUDA API call.
    Api,
    /// memcheck with `--leak-check full`: an allocation never freed.
    Leak,
    /// initcheck: a kernel read device memory never written.
    Initcheck,
    /// initcheck: an API call (a copy, say) read device memory never written.
    InitcheckApiError,
    /// initcheck with `--track-unused-memory`: an allocation never (fully) written.
    UnusedMemory,
    /// Any other kind (racecheck hazards, synccheck errors, hardware exceptions ...), by name:
    /// none was seen in real output yet, so none is named here.
    Other(String),
}

impl RecordKind {
    /// The XML name.
    pub fn as_str(&self) -> &str {
        match self {
            RecordKind::Precise => "Precise",
            RecordKind::Api => "Api",
            RecordKind::Leak => "Leak",
            RecordKind::Initcheck => "Initcheck",
            RecordKind::InitcheckApiError => "InitcheckApiError",
            RecordKind::UnusedMemory => "UnusedMemory",
            RecordKind::Other(name) => name,
        }
    }
}

impl From<String> for RecordKind {
    fn from(name: String) -> Self {
        match name.as_str() {
            "Precise" => RecordKind::Precise,
            "Api" => RecordKind::Api,
            "Leak" => RecordKind::Leak,
            "Initcheck" => RecordKind::Initcheck,
            "InitcheckApiError" => RecordKind::InitcheckApiError,
            "UnusedMemory" => RecordKind::UnusedMemory,
            _ => RecordKind::Other(name),
        }
    }
}

impl From<RecordKind> for String {
    fn from(kind: RecordKind) -> String {
        kind.as_str().to_string()
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which side of the nearest allocation an access fell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// Below its start.
    Before,
    /// Past its end.
    After,
}

/// The allocation nearest to an out-of-bounds access, as compute-sanitizer measured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NearestAllocation {
    /// Its start address.
    pub base: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The distance compute-sanitizer states, in bytes. It counts from the last byte of the
    /// allocation: an access starting right at its end is "1 bytes after".
    pub distance: u64,
    /// Before or after it.
    pub side: Side,
}

/// One frame of the host stack saved with a record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFrame {
    /// The function, when the module has symbols for it.
    pub func: Option<String>,
    /// The shared object or executable.
    pub module: Option<String>,
    /// The offset in the module.
    pub pc: Option<u64>,
}

/// One `<record>` of compute-sanitizer's XML.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanitizerRecord {
    /// The tool that reported it.
    pub tool: Tool,
    /// `<kind>`.
    pub kind: RecordKind,
    /// `<level>` (`Error`, `Warning` ...), where given.
    pub level: Option<String>,
    /// `<what><text>`: compute-sanitizer's own sentence.
    pub text: String,
    /// `<what><error>`: `out of bounds`, `CUDA_ERROR_LAUNCH_FAILED` ...
    pub error: Option<String>,
    /// `<what><api>`: the failing API call of an `Api` record.
    pub api: Option<String>,
    /// `<what><message>`: the API error's description.
    pub message: Option<String>,
    /// `<what><space>`: the memory space accessed (`__global__`, `__shared__` ...).
    pub space: Option<String>,
    /// `<what><direction>`: `read` or `write`.
    pub direction: Option<String>,
    /// `<what><size>` or `<accessSize>`: bytes accessed (or leaked).
    pub size: Option<u64>,
    /// `<what><address>` or `<accessAddress>`: the address accessed (or leaked).
    pub address: Option<u64>,
    /// `<where><func>`: the kernel.
    pub kernel: Option<String>,
    /// `<where><path>`: its source file.
    pub file: Option<String>,
    /// `<where><line>`.
    pub line: Option<u32>,
    /// `<where><pc>`: the offset in the kernel.
    pub pc: Option<u64>,
    /// `<who><threadIdx>`.
    pub thread: Option<[u32; 3]>,
    /// `<who><blockIdx>`.
    pub block: Option<[u32; 3]>,
    /// The nearest allocation: not in the XML, filled from the text by
    /// [`SanitizerReport::attach_text`].
    pub nearest_allocation: Option<NearestAllocation>,
    /// `<hostStack><saveLocation>`: when the host stack was saved (`kernel launch time`, `error`,
    /// `allocation time`).
    pub host_stack_saved_at: Option<String>,
    /// `<hostStack><frame>`s, innermost first.
    pub host_frames: Vec<HostFrame>,
}

impl SanitizerRecord {
    /// Whether the record names a kernel: a device-side finding, not an API error or a leak.
    pub fn is_device_side(&self) -> bool {
        self.kernel.is_some()
    }

    /// The first named host frame: the API call at the top of the host stack.
    pub fn host_api(&self) -> Option<&str> {
        self.host_frames
            .iter()
            .find_map(|frame| frame.func.as_deref())
    }

    /// ` in KERNEL at FILE:LINE` (the file without its directory), or nothing for a host-side
    /// record.
    fn kernel_site(&self) -> String {
        let Some(kernel) = &self.kernel else {
            return String::new();
        };
        let mut site = format!(" in {kernel}");
        if let Some(file) = &self.file {
            let name = Path::new(file)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| file.clone());
            match self.line {
                Some(n) => site.push_str(&format!(" at {name}:{n}")),
                None => site.push_str(&format!(" at {name}")),
            }
        }
        site
    }

    /// What and where, without the thread, the address or the allocation: compute-sanitizer's
    /// sentence and the kernel (`Invalid __global__ write of size 4 bytes in sort_scatter at
    /// layout.cu:196`), or the API call of a host-side record. Short enough for one line per tool.
    pub fn headline(&self) -> String {
        let mut line = self.text.trim().to_string();
        line.push_str(&self.kernel_site());
        if !self.is_device_side() {
            if let Some(api) = self.host_api() {
                line.push_str(&format!(" (host: {api})"));
            }
        }
        line
    }

    /// The record in one line, for reports.
    pub fn one_line(&self) -> String {
        let mut line = self.text.trim().to_string();
        line.push_str(&self.kernel_site());
        if let Some([x, y, z]) = self.thread {
            line.push_str(&format!(", thread ({x},{y},{z})"));
        }
        if let Some([x, y, z]) = self.block {
            line.push_str(&format!(" block ({x},{y},{z})"));
        }
        if let Some(address) = self.address {
            line.push_str(&format!(", address {address:#x}"));
        }
        if let Some(near) = &self.nearest_allocation {
            let side = match near.side {
                Side::Before => "before",
                Side::After => "after",
            };
            line.push_str(&format!(
                ", {} bytes {side} the {}-byte allocation at {:#x}",
                near.distance, near.size, near.base
            ));
        }
        if !self.is_device_side() {
            if let Some(api) = self.host_api() {
                line.push_str(&format!(" (host: {api})"));
            }
        }
        line
    }
}

/// Every record of one XML file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanitizerReport {
    /// The tool that wrote it.
    pub tool: Tool,
    /// Its records, in the file's order.
    pub records: Vec<SanitizerRecord>,
}

impl SanitizerReport {
    /// No records: the tool found nothing it prints.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// How many records of each kind, by XML name.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for record in &self.records {
            *counts.entry(record.kind.to_string()).or_insert(0) += 1;
        }
        counts
    }

    /// How many records of `kind`.
    pub fn count(&self, kind: &RecordKind) -> usize {
        self.records.iter().filter(|r| &r.kind == kind).count()
    }

    /// The signature of the report's main finding; see [`signature_for`].
    pub fn signature(&self) -> Option<String> {
        signature_for(&self.records)
    }

    /// Fills in what only the text output says: the nearest allocation of each out-of-bounds
    /// access, matched by address.
    pub fn attach_text(&mut self, text: &TextReport) {
        for record in &mut self.records {
            if record.nearest_allocation.is_some() {
                continue;
            }
            if let Some(address) = record.address {
                record.nearest_allocation = text.nearest_allocations.get(&address).copied();
            }
        }
    }
}

/// Why XML text is not a compute-sanitizer report.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not well-formed XML (truncated by a killed run, say).
    #[error("not well-formed XML")]
    Xml(#[from] roxmltree::Error),
    /// Well-formed, but not compute-sanitizer's.
    #[error("the root element is <{found}>, not <ComputeSanitizerOutput>")]
    WrongRoot {
        /// The root element's name.
        found: String,
    },
    /// A record without its `<kind>`.
    #[error("record {index} has no <kind>")]
    MissingKind {
        /// The record's position, from 0.
        index: usize,
    },
    /// A field that must be a number is not.
    #[error("record {index}: <{field}> is `{value}`, not a number")]
    BadNumber {
        /// The record's position, from 0.
        index: usize,
        /// The element.
        field: String,
        /// Its text.
        value: String,
    },
}

/// Why an XML file could not be read as a report.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// There is no file: compute-sanitizer did not start, or was killed before writing it.
    #[error("{}: no compute-sanitizer XML was written", .path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file is empty: compute-sanitizer stopped before finishing it.
    #[error("{}: the compute-sanitizer XML is empty", .path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Larger than any real report.
    #[error("{}: {bytes} bytes is too large for a compute-sanitizer XML", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// It could not be read.
    #[error("{}: cannot read", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// It is not a report.
    #[error("{}: not a compute-sanitizer report", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ParseError,
    },
}

/// Reads and parses the XML file `path` written by `tool`. A missing or empty file is an error
/// ([`ReadError::Missing`], [`ReadError::Empty`]); `<ComputeSanitizerOutput/>` is an empty
/// report.
pub fn read_xml(tool: Tool, path: &Path) -> Result<SanitizerReport, ReadError> {
    let io_error = |source: io::Error| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ReadError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io_error(e)),
    };
    if meta.len() > MAX_READ_BYTES {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            bytes: meta.len(),
        });
    }
    let bytes = std::fs::read(path).map_err(io_error)?;
    let text = String::from_utf8_lossy(&bytes);
    if text.trim().is_empty() {
        return Err(ReadError::Empty {
            path: path.to_path_buf(),
        });
    }
    parse_xml(tool, &text).map_err(|source| ReadError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// What a wrapped run left, read together: the XML at `xml` with the nearest allocations its
/// text output `text` gives (a worker's captured output, say), and that text's summary.
pub fn read_report(
    tool: Tool,
    xml: &Path,
    text: &str,
) -> Result<(SanitizerReport, TextReport), ReadError> {
    let text = parse_text(text);
    let mut report = read_xml(tool, xml)?;
    report.attach_text(&text);
    Ok((report, text))
}

/// Parses the text of an XML file written by `tool` with `--xml --save`.
pub fn parse_xml(tool: Tool, xml: &str) -> Result<SanitizerReport, ParseError> {
    let doc = roxmltree::Document::parse(xml)?;
    let root = doc.root_element();
    if root.tag_name().name() != "ComputeSanitizerOutput" {
        return Err(ParseError::WrongRoot {
            found: root.tag_name().name().to_string(),
        });
    }
    let records = root
        .children()
        .filter(|node| node.has_tag_name("record"))
        .enumerate()
        .map(|(index, node)| parse_record(tool, index, node))
        .collect::<Result<_, _>>()?;
    Ok(SanitizerReport { tool, records })
}

fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    node.children().find(|c| c.has_tag_name(name))
}

/// The trimmed text of child `name`, if it has any.
fn child_text(node: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(node, name)
        .and_then(|c| c.text())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// Parses `0x`-prefixed hexadecimal (addresses, pcs) or decimal (`accessAddress` is decimal).
fn parse_number(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.replace(',', "").parse().ok(),
    }
}

fn parse_record(
    tool: Tool,
    index: usize,
    node: roxmltree::Node<'_, '_>,
) -> Result<SanitizerRecord, ParseError> {
    let number =
        |parent: Option<roxmltree::Node<'_, '_>>, name: &str| -> Result<Option<u64>, ParseError> {
            match parent.and_then(|p| child_text(p, name)) {
                None => Ok(None),
                Some(value) => parse_number(&value).map(Some).ok_or(ParseError::BadNumber {
                    index,
                    field: name.to_string(),
                    value,
                }),
            }
        };
    let coords = |who: Option<roxmltree::Node<'_, '_>>,
                  name: &str|
     -> Result<Option<[u32; 3]>, ParseError> {
        let Some(node) = who.and_then(|w| child(w, name)) else {
            return Ok(None);
        };
        let mut xyz = [0u32; 3];
        for (slot, axis) in xyz.iter_mut().zip(["x", "y", "z"]) {
            let value = child_text(node, axis).unwrap_or_default();
            *slot = value.parse().map_err(|_| ParseError::BadNumber {
                index,
                field: format!("{name}.{axis}"),
                value,
            })?;
        }
        Ok(Some(xyz))
    };

    let kind = child_text(node, "kind").ok_or(ParseError::MissingKind { index })?;
    let what = child(node, "what");
    let place = child(node, "where");
    let who = child(node, "who");
    let line = number(place, "line")?
        .map(|n| {
            u32::try_from(n).map_err(|_| ParseError::BadNumber {
                index,
                field: "line".into(),
                value: n.to_string(),
            })
        })
        .transpose()?;
    // Access records say `size`/`address`, initcheck's API records `accessSize`/`accessAddress`
    // (in decimal), unused-memory records the `<allocation>` they are about.
    let allocation = what.and_then(|w| child(w, "allocation"));
    let size = match number(what, "size")? {
        Some(size) => Some(size),
        None => match number(what, "accessSize")? {
            Some(size) => Some(size),
            None => number(allocation, "size")?,
        },
    };
    let address = match number(what, "address")? {
        Some(address) => Some(address),
        None => match number(what, "accessAddress")? {
            Some(address) => Some(address),
            None => number(allocation, "address")?,
        },
    };
    let stack = child(node, "hostStack");
    let host_frames = match stack {
        None => Vec::new(),
        Some(stack) => stack
            .children()
            .filter(|c| c.has_tag_name("frame"))
            .map(|frame| {
                Ok(HostFrame {
                    func: child_text(frame, "func"),
                    module: child_text(frame, "module"),
                    pc: number(Some(frame), "pc")?,
                })
            })
            .collect::<Result<_, ParseError>>()?,
    };
    Ok(SanitizerRecord {
        tool,
        kind: RecordKind::from(kind),
        level: child_text(node, "level"),
        text: what.and_then(|w| child_text(w, "text")).unwrap_or_default(),
        error: what.and_then(|w| child_text(w, "error")),
        api: what.and_then(|w| child_text(w, "api")),
        message: what.and_then(|w| child_text(w, "message")),
        space: what.and_then(|w| child_text(w, "space")),
        direction: what.and_then(|w| child_text(w, "direction")),
        size,
        address,
        kernel: place.and_then(|p| child_text(p, "func")),
        file: place.and_then(|p| child_text(p, "path")),
        line,
        pc: number(place, "pc")?,
        thread: coords(who, "threadIdx")?,
        block: coords(who, "blockIdx")?,
        nearest_allocation: None,
        host_stack_saved_at: stack.and_then(|s| child_text(s, "saveLocation")),
        host_frames,
    })
}

// ------------------------------------------------------------------------------------------------
// The text output
// ------------------------------------------------------------------------------------------------

/// What compute-sanitizer's text output (and the program's own lines mixed into it) says beyond
/// the XML.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextReport {
    /// `ERROR SUMMARY: N errors`: every error, printed or not.
    pub errors: Option<u64>,
    /// `ERROR SUMMARY: N errors were not printed`: those past the print limit (absent from the
    /// XML too).
    pub errors_not_printed: Option<u64>,
    /// `LEAK SUMMARY: B bytes leaked in N allocations`: (bytes, allocations).
    pub leaked: Option<(u64, u64)>,
    /// `RACECHECK SUMMARY: H hazards displayed (E errors, W warnings)`: (hazards, errors,
    /// warnings).
    pub hazards: Option<(u64, u64, u64)>,
    /// `Target application returned an error`: the program itself exited non-zero.
    pub target_failed: bool,
    /// The nearest allocation of each out-of-bounds access, by the access's address.
    pub nearest_allocations: BTreeMap<u64, NearestAllocation>,
    /// The `signature: ...` line `forcefield repro` printed, if it printed one.
    pub program_signature: Option<String>,
}

/// The prefix of every line compute-sanitizer prints.
const TEXT_PREFIX: &str = "=========";

/// Parses compute-sanitizer's text output (stdout and stderr of the wrapped run, which may hold
/// the program's own lines too). Lines it does not know are skipped.
pub fn parse_text(text: &str) -> TextReport {
    let mut report = TextReport::default();
    let mut last_access: Option<u64> = None;
    for raw in text.lines() {
        let Some(body) = raw.strip_prefix(TEXT_PREFIX) else {
            if let Some(signature) = raw.strip_prefix("signature: ") {
                report.program_signature = Some(signature.trim().to_string());
            }
            continue;
        };
        // A new error starts at an unindented line; details are indented below it.
        let indented = body.starts_with("  ");
        let line = body.trim();
        if !indented {
            last_access = None;
        }
        if let Some(rest) = line.strip_prefix("ERROR SUMMARY: ") {
            let count = first_number(rest);
            if rest.contains("not printed") {
                report.errors_not_printed = count;
            } else {
                report.errors = count;
            }
        } else if let Some(rest) = line.strip_prefix("LEAK SUMMARY: ") {
            let numbers = numbers_in(rest);
            if let [bytes, allocations, ..] = numbers[..] {
                report.leaked = Some((bytes, allocations));
            }
        } else if let Some(rest) = line.strip_prefix("RACECHECK SUMMARY: ") {
            let numbers = numbers_in(rest);
            if let [hazards, errors, warnings, ..] = numbers[..] {
                report.hazards = Some((hazards, errors, warnings));
            }
        } else if line.starts_with("Target application returned an error") {
            report.target_failed = true;
        } else if line.starts_with("Access") || line.starts_with("Address") {
            last_access = line
                .split_whitespace()
                .find(|word| word.starts_with("0x"))
                .and_then(parse_number);
        } else if let (Some(access), Some(near)) = (last_access, parse_nearest(line)) {
            report.nearest_allocations.insert(access, near);
        }
    }
    report
}

/// `and is N bytes after|before the nearest allocation at 0xBASE of size M bytes`.
fn parse_nearest(line: &str) -> Option<NearestAllocation> {
    let rest = line.strip_prefix("and is ")?;
    let (distance, rest) = rest.split_once(" bytes ")?;
    let (side, rest) = if let Some(rest) = rest.strip_prefix("after ") {
        (Side::After, rest)
    } else {
        (Side::Before, rest.strip_prefix("before ")?)
    };
    let rest = rest.strip_prefix("the nearest allocation at ")?;
    let (base, rest) = rest.split_once(" of size ")?;
    let size = rest.strip_suffix(" bytes").unwrap_or(rest);
    Some(NearestAllocation {
        base: parse_number(base)?,
        size: parse_number(size)?,
        distance: parse_number(distance)?,
        side,
    })
}

/// The numbers in `text`, thousands separators allowed (`2,048`).
fn numbers_in(text: &str) -> Vec<u64> {
    text.split(|c: char| !(c.is_ascii_digit() || c == ','))
        .filter_map(|word| {
            let digits = word.replace(',', "");
            if digits.is_empty() {
                None
            } else {
                digits.parse().ok()
            }
        })
        .collect()
}

fn first_number(text: &str) -> Option<u64> {
    numbers_in(text).first().copied()
}

// ------------------------------------------------------------------------------------------------
// Signatures
// ------------------------------------------------------------------------------------------------

/// The signature of the main finding among `records`, in the project's `class:detail:site` form:
/// `sanitizer:<tool>-<error>:<site>`, e.g. `sanitizer:memcheck-out-of-bounds-write:sort_scatter`.
///
/// The main finding is the first device-side record (it names a kernel), else the first API
/// error, else the first leak or unused allocation: a kernel's bad access comes first in
/// importance even when an API error or a leak was printed before it. The site is the kernel, else
/// the failing API call, else the first named host frame. `None` when there are no records.
pub fn signature_for(records: &[SanitizerRecord]) -> Option<String> {
    let main = main_record(records)?;
    let detail = format!("{}-{}", main.tool, detail_of(main));
    Some(format!("sanitizer:{detail}:{}", site_of(main)))
}

/// Importance of a record for naming and listing: lower first.
pub(crate) fn rank(record: &SanitizerRecord) -> u8 {
    if record.is_device_side() {
        0
    } else if matches!(record.kind, RecordKind::Leak | RecordKind::UnusedMemory) {
        2
    } else {
        1
    }
}

pub(crate) fn main_record(records: &[SanitizerRecord]) -> Option<&SanitizerRecord> {
    // `min_by_key` keeps the first of equals: the earliest record of the best rank.
    records.iter().min_by_key(|r| rank(r))
}

/// What went wrong, as a slug: `out-of-bounds-write`, `cuda-error-launch-failed`, `leak` ...
fn detail_of(record: &SanitizerRecord) -> String {
    match (&record.kind, &record.error) {
        (RecordKind::Leak, _) => "leak".to_string(),
        (RecordKind::UnusedMemory, _) => "unused-memory".to_string(),
        (RecordKind::InitcheckApiError, _) => "uninitialized-api-access".to_string(),
        (RecordKind::Initcheck, None) => {
            format!("uninitialized-{}", direction_of(record).unwrap_or("access"))
        }
        (_, Some(error)) => match direction_of(record) {
            Some(direction) if record.kind != RecordKind::Api => {
                format!("{}-{direction}", slug(error))
            }
            _ => slug(error),
        },
        (kind, None) => {
            // No error field: the sentence without its numbers, so that sizes and counts do not
            // split one bug into many signatures.
            let words: Vec<&str> = record
                .text
                .split_whitespace()
                .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
                .take(6)
                .collect();
            let text = slug(&words.join(" "));
            if text.is_empty() {
                slug(kind.as_str())
            } else {
                text
            }
        }
    }
}

/// `read` or `write`: from `<direction>`, else from the sentence.
fn direction_of(record: &SanitizerRecord) -> Option<&'static str> {
    let said = record
        .direction
        .as_deref()
        .unwrap_or(record.text.as_str())
        .to_ascii_lowercase();
    let words: Vec<&str> = said.split_whitespace().collect();
    if words.contains(&"write") {
        Some("write")
    } else if words.contains(&"read") {
        Some("read")
    } else {
        None
    }
}

/// Where: the kernel, else the API call, else `host`. Made safe for a signature's last field,
/// which may hold no `:` (a C++ kernel's `ns::name(int)` becomes `ns.name`).
fn site_of(record: &SanitizerRecord) -> String {
    let name = record
        .kernel
        .as_deref()
        .or(record.api.as_deref())
        .or_else(|| record.host_api())
        .unwrap_or("host");
    let name = name.split('(').next().unwrap_or(name).trim();
    let site: String = name
        .replace("::", ".")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if site.is_empty() {
        "host".to_string()
    } else {
        site
    }
}

/// Lower case, runs of anything but letters and digits turned into one `-`.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}
