//! The harness's layering, checked from its source: imports only go down the layers that
//! ARCHITECTURE.md describes, and no import cycle spans more than three files.
//!
//! The checker reads every `harness/src/**.rs`, collects the `crate::…`, `super::…` and `self::…`
//! paths of its code (comments and `#[cfg(test)]` modules, inline or in a `tests.rs` of their own,
//! left out: a unit test may build its input with any layer), resolves each path to the file that defines the module, and maps files
//! to layers by their folder. It is plain text processing on purpose: no parser crate, and a
//! new folder that is in no layer fails the test until it is given one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A file may import its own layer and any layer of a lower rank;
/// layers of equal rank (`hunt` and `bench`) may not import each other.
const LAYERS: &[(&str, u8)] = &[
    ("base", 0),
    ("isolate", 1),
    ("case", 2),
    ("sanitizers", 3),
    ("worker", 4),
    ("client", 5),
    ("hunt", 6),
    ("bench", 6),
    ("commands", 7),
    ("root", 8),
];

/// Files at the top of `src/` that import nothing of the crate's layers: the foundation.
const BASE_FILES: &[&str] = &[
    "artifacts.rs",
    "exit.rs",
    "graph_io.rs",
    "input.rs",
    "interrupt.rs",
    "svg.rs",
];

/// The largest import cycle (strongly connected files) tolerated: a type and its helper may
/// know each other, a knot of four or more files is a missing layer.
const MAX_CYCLE: usize = 3;

/// The layer a file (relative to `src/`, with `/` separators) belongs to, or `None`.
fn layer_of(file: &str) -> Option<&'static str> {
    if file == "lib.rs" || file == "main.rs" {
        return Some("root");
    }
    if BASE_FILES.contains(&file) {
        return Some("base");
    }
    let folder = file.split('/').next()?;
    if !file.contains('/') {
        return None;
    }
    LAYERS
        .iter()
        .find(|(name, _)| *name == folder && *name != "base" && *name != "root")
        .map(|(name, _)| *name)
}

fn rank(layer: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(name, _)| *name == layer)
        .map_or(u8::MAX, |(_, r)| *r)
}

/// One import of one file: where it is and which file it reaches.
#[derive(Debug, Clone)]
struct Import {
    from: String,
    line: usize,
    path: String,
    to: String,
}

/// The module path of a file: `a/b.rs` is `a::b`, `a/mod.rs` is `a`, `lib.rs` is the root.
fn module_of(file: &str) -> Vec<String> {
    let stem = file.trim_end_matches(".rs");
    let mut parts: Vec<String> = stem.split('/').map(str::to_string).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The text with comments and `#[cfg(test)]` modules blanked (newlines kept, so line numbers
/// stay true). String and char literals are blanked too, so a brace or a path inside one does
/// not count.
fn code_only(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == '"'
            || (c == 'r'
                && (next == Some('"') || next == Some('#'))
                && !out.ends_with(|p: char| p.is_alphanumeric() || p == '_'))
        {
            // A string, plain or raw (`r"…"`, `r#"…"#`): blanked up to its closing quote.
            let start = i;
            let raw = c == 'r';
            let mut k = i + usize::from(raw);
            let mut hashes = 0;
            while raw && chars.get(k) == Some(&'#') {
                hashes += 1;
                k += 1;
            }
            if chars.get(k) != Some(&'"') {
                // `r#ident` or a name that starts with r: not a string.
                out.push(c);
                i += 1;
                continue;
            }
            k += 1;
            while k < chars.len() {
                if !raw && chars[k] == '\\' {
                    k += 2;
                    continue;
                }
                if chars[k] == '"' && (0..hashes).all(|h| chars.get(k + 1 + h) == Some(&'#')) {
                    k += 1 + hashes;
                    break;
                }
                k += 1;
            }
            let end = k.min(chars.len());
            out.extend(chars[start..end].iter().map(|&c| blank(c)));
            i = end;
        } else if c == '\'' {
            // A char literal (`'x'`, `'\n'`, `'\u{..}'`) or a lifetime (`'a`).
            let close = if next == Some('\\') {
                (i + 2..chars.len().min(i + 12)).find(|&k| chars[k] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(end) => {
                    for _ in i..=end {
                        out.push(' ');
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    blank_test_modules(&out)
}

/// Blanks every `#[cfg(test)] mod name { … }` (the braces are balanced once comments and
/// literals are gone).
fn blank_test_modules(code: &str) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    let text: String = chars.iter().collect();
    let mut from = 0;
    while let Some(at) = text[from..].find("#[cfg(test)]") {
        let attr = from + at;
        let rest = &text[attr + "#[cfg(test)]".len()..];
        let trimmed = rest.trim_start();
        let is_module = trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ");
        let open = rest.find('{');
        let semicolon = rest.find(';');
        from = attr + 1;
        let (true, Some(open)) = (is_module, open) else {
            continue;
        };
        if semicolon.is_some_and(|s| s < open) {
            continue; // `#[cfg(test)] mod tests;`: the file is read on its own
        }
        // `text` is ASCII-safe to index by char only if we work on chars: map byte to char index.
        let open_char = text[..attr + "#[cfg(test)]".len() + open].chars().count();
        let attr_char = text[..attr].chars().count();
        let mut depth = 0usize;
        let mut end = open_char;
        for (k, &c) in chars.iter().enumerate().skip(open_char) {
            if c == '{' {
                depth += 1;
            } else if c == '}' {
                depth -= 1;
                if depth == 0 {
                    end = k;
                    break;
                }
            }
        }
        for c in chars.iter_mut().take(end + 1).skip(attr_char) {
            if *c != '\n' {
                *c = ' ';
            }
        }
    }
    chars.into_iter().collect()
}

/// Expands a use tree (`a::{b, c::{d, e}}`, whitespace removed) into its paths.
fn expand_tree(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    if let Some(inner) = tree.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        let mut depth = 0;
        let mut start = 0;
        let bytes = inner.as_bytes();
        for (k, &b) in bytes.iter().enumerate() {
            match b {
                b'{' => depth += 1,
                b'}' => depth -= 1,
                b',' if depth == 0 => {
                    expand_tree(prefix, &inner[start..k], out);
                    start = k + 1;
                }
                _ => {}
            }
        }
        if start < inner.len() {
            expand_tree(prefix, &inner[start..], out);
        }
        return;
    }
    if let Some(brace) = tree.find("::{") {
        let mut next = prefix.to_vec();
        next.extend(tree[..brace].split("::").map(str::to_string));
        expand_tree(&next, &tree[brace + 2..], out);
        return;
    }
    if tree.is_empty() {
        return;
    }
    let mut path = prefix.to_vec();
    path.extend(
        tree.split(" as ")
            .next()
            .unwrap_or(tree)
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    );
    out.push(path);
}

/// The child modules a file declares with `mod name;` (any visibility, attributes aside): the
/// names a plain relative path (`use name::X`, the 2018 edition's way) may start with.
fn child_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for statement in code.split([';', '{', '}']) {
        // Attributes (`#[cfg(test)]`) before the item are no part of its name.
        let item = statement.rsplit(']').next().unwrap_or(statement);
        let words: Vec<&str> = item.split_whitespace().collect();
        // `mod name`, `pub mod name`, `pub(crate) mod name`, `pub(in …) mod name`.
        if let Some(at) = words.iter().position(|w| *w == "mod") {
            let visibility_only = words[..at]
                .iter()
                .all(|w| w.starts_with("pub") || w.ends_with(')'));
            if let (true, Some(name)) = (visibility_only, words.get(at + 1)) {
                if words.len() == at + 2 {
                    found.insert((*name).to_string());
                }
            }
        }
    }
    found
}

/// A use tree with its whitespace removed except the single space on each side of `as` (a
/// renaming), so `crate::case::{Case as C}` stays `crate::case::{Case as C}` and no name that
/// merely contains the letters `as` (`case`, `classify`) is cut.
fn squeeze_use_tree(tree: &str) -> String {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(tree.len());
    let mut pending_space = false;
    for c in tree.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space && word(c) && out.ends_with(word) {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    out
}

/// Every crate-relative path of a file's code, with its line, as absolute module segments.
fn paths_of(file: &str, src: &str) -> Vec<(usize, Vec<String>)> {
    let code = code_only(src);
    let here = module_of(file);
    let children = child_modules(&code);
    let absolute = |path: &[String]| -> Option<Vec<String>> {
        let mut segs = path.iter().peekable();
        let mut base = match segs.peek().map(|s| s.as_str()) {
            Some("crate") => {
                segs.next();
                Vec::new()
            }
            Some("self") => {
                segs.next();
                here.clone()
            }
            Some("super") => here.clone(),
            // A plain relative path into a child module this file declares.
            Some(name) if children.contains(name) => here.clone(),
            _ => return None,
        };
        while segs.peek().map(|s| s.as_str()) == Some("super") {
            segs.next();
            base.pop()?;
        }
        base.extend(segs.cloned());
        Some(base)
    };
    let line_of = |offset: usize| code[..offset].matches('\n').count() + 1;
    let mut found = Vec::new();
    // `use` trees.
    let mut from = 0;
    while let Some(at) = code[from..].find("use ") {
        let start = from + at;
        from = start + 4;
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = code[start..].find(';') else {
            break;
        };
        let tree = squeeze_use_tree(&code[start + 4..start + end]);
        let mut paths = Vec::new();
        expand_tree(&[], &tree, &mut paths);
        for path in paths {
            if let Some(abs) = absolute(&path) {
                found.push((line_of(start), abs));
            }
        }
    }
    // Paths in expressions and types: `crate::a::b`, `super::a`.
    for anchor in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(anchor) {
            let start = from + at;
            from = start + anchor.len();
            let before = code[..start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String = code[start..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let segs: Vec<String> = path
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if let Some(abs) = absolute(&segs) {
                found.push((line_of(start), abs));
            }
        }
    }
    found
}

/// Whether a file is a unit-test module of its own (`foo/tests.rs`, declared `#[cfg(test)] mod
/// tests;` in `foo.rs`): exempt like an inline one.
fn is_test_module(file: &str) -> bool {
    file == "tests.rs" || file.ends_with("/tests.rs")
}

/// The modules declared with a `#[path = "file.rs"] mod name;` attribute in `file`, as (module
/// path, file relative to `src/`): such a module is named for its declaration, not its file.
fn path_attribute_modules(file: &str, src: &str) -> Vec<(Vec<String>, String)> {
    let dir = file.rsplit_once('/').map_or("", |(dir, _)| dir);
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = src[from..].find("#[path") {
        let start = from + at;
        from = start + 1;
        let rest = &src[start..];
        let (Some(open), Some(close)) = (rest.find('"'), rest.find("\"]")) else {
            continue;
        };
        if open >= close {
            continue;
        }
        let target = &rest[open + 1..close];
        let item = &rest[close + 2..];
        let Some(decl) = item.split(';').next() else {
            continue;
        };
        let words: Vec<&str> = decl.split_whitespace().collect();
        if let Some(at) = words.iter().position(|w| *w == "mod") {
            if let Some(name) = words.get(at + 1) {
                let mut module = module_of(file);
                module.push((*name).to_string());
                let path = if dir.is_empty() {
                    target.to_string()
                } else {
                    format!("{dir}/{target}")
                };
                found.push((module, path));
            }
        }
    }
    found
}

/// Every import between two different files of `files` (path relative to `src/` → text).
fn imports(files: &BTreeMap<String, String>) -> Vec<Import> {
    let mut modules: BTreeMap<Vec<String>, &str> = files
        .keys()
        .filter(|f| f.as_str() != "main.rs")
        .map(|f| (module_of(f), f.as_str()))
        .collect();
    for (file, src) in files {
        for (module, path) in path_attribute_modules(file, src) {
            if let Some((known, _)) = files.get_key_value(&path) {
                modules.insert(module, known.as_str());
            }
        }
    }
    let mut all = Vec::new();
    for (file, src) in files {
        if is_test_module(file) {
            continue;
        }
        let mut seen = BTreeSet::new();
        for (line, segs) in paths_of(file, src) {
            // The longest prefix that names a module file; the root (`lib.rs`) is no edge.
            let target = (1..=segs.len())
                .rev()
                .find_map(|k| modules.get(&segs[..k]).copied());
            let Some(to) = target else { continue };
            if to == file || to == "lib.rs" || !seen.insert(to.to_string()) {
                continue;
            }
            all.push(Import {
                from: file.clone(),
                line,
                path: segs.join("::"),
                to: to.to_string(),
            });
        }
    }
    all
}

/// The rule an import breaks, if any.
fn violation(import: &Import) -> Option<String> {
    let Some(from) = layer_of(&import.from) else {
        return Some(format!(
            "src/{} is in no layer: put it in a layer's folder (or the base list) of tests/layering.rs",
            import.from
        ));
    };
    let to = layer_of(&import.to)?;
    if from == to || rank(to) < rank(from) {
        return None;
    }
    let why = if rank(to) == rank(from) {
        format!("{from} and {to} are siblings and may not import each other")
    } else {
        format!("{from} may not import {to}, a higher layer")
    };
    Some(format!(
        "src/{}:{} imports crate::{} (src/{}): {why}",
        import.from, import.line, import.path, import.to
    ))
}

/// Strongly connected sets of files (Tarjan), largest first, only those of two files or more.
fn cycles(imports: &[Import]) -> Vec<Vec<String>> {
    let mut nodes: BTreeSet<&str> = BTreeSet::new();
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for i in imports {
        nodes.insert(&i.from);
        nodes.insert(&i.to);
        edges.entry(&i.from).or_default().push(&i.to);
    }
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(v: &'a str, edges: &BTreeMap<&'a str, Vec<&'a str>>, s: &mut State<'a>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in edges.get(v).map_or(&[][..], Vec::as_slice) {
            if !s.index.contains_key(w) {
                visit(w, edges, s);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in nodes {
        if !state.index.contains_key(v) {
            visit(v, &edges, &mut state);
        }
    }
    state.found.sort_by_key(|c| std::cmp::Reverse(c.len()));
    state.found
}

/// Every broken rule of a source tree: upward imports, then cycles over `MAX_CYCLE` files.
fn check(files: &BTreeMap<String, String>) -> Vec<String> {
    let imports = imports(files);
    let mut problems: Vec<String> = files
        .keys()
        .filter(|f| layer_of(f).is_none())
        .map(|f| format!("src/{f} is in no layer: put it in a layer's folder (or the base list) of tests/layering.rs"))
        .collect();
    problems.extend(imports.iter().filter_map(violation));
    problems.dedup();
    for cycle in cycles(&imports) {
        if cycle.len() > MAX_CYCLE {
            problems.push(format!(
                "an import cycle of {} files (at most {MAX_CYCLE}): {}",
                cycle.len(),
                cycle.join(", ")
            ));
        }
    }
    problems
}

fn read_tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let rel = path
                    .strip_prefix(root)
                    .expect("under the root")
                    .to_string_lossy()
                    .replace('\\', "/");
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                out.insert(rel, text);
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(root, root, &mut files);
    files
}

/// Every line outside `commands/` and `main.rs` whose code (comments aside; strings and unit
/// tests included, so not even a test below `commands/` parses a flag) mentions `clap::`:
/// command-line parsing belongs to `commands/` alone.
fn clap_outside_commands(files: &BTreeMap<String, String>) -> Vec<String> {
    let mut found = Vec::new();
    for (file, src) in files {
        if file.starts_with("commands/") || file == "main.rs" {
            continue;
        }
        for (index, line) in src.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("clap::") {
                found.push(format!(
                    "src/{file}:{}: mentions clap::, which only commands/ may know",
                    index + 1
                ));
            }
        }
    }
    found
}

#[test]
fn only_commands_know_clap() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read_tree(&root);
    assert!(files.len() > 50, "read only {} files", files.len());
    let found = clap_outside_commands(&files);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn clap_below_commands_is_named_with_its_file_and_line() {
    let files = tree(&[
        ("commands/run.rs", "use clap::Args;\n"),
        ("main.rs", "fn main() { clap::Command::new(\"x\"); }\n"),
        (
            "case/mod.rs",
            "//! no clap:: here\nfn f() {} // nor clap:: here\n",
        ),
        (
            "sanitizers/mode.rs",
            "//! the mode\n\n#[derive(Clone, clap::ValueEnum)]\npub enum Mode { Off }\n",
        ),
        ("worker/tests.rs", "use clap::Parser;\n"),
    ]);
    let found = clap_outside_commands(&files);
    assert_eq!(
        found,
        [
            "src/sanitizers/mode.rs:3: mentions clap::, which only commands/ may know",
            "src/worker/tests.rs:1: mentions clap::, which only commands/ may know",
        ],
    );
}

#[test]
fn harness_imports_only_go_down_and_form_no_large_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read_tree(&root);
    assert!(files.len() > 50, "read only {} files", files.len());
    let problems = check(&files);
    assert!(
        problems.is_empty(),
        "the harness's layering is broken ({} problems; see ARCHITECTURE.md, \"Layers of the harness\"):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

fn tree(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(f, s)| (f.to_string(), s.to_string()))
        .collect()
}

#[test]
fn an_upward_import_is_named_with_its_file_line_and_rule() {
    let files = tree(&[
        ("lib.rs", "pub mod case;\npub mod commands;\n"),
        (
            "case/mod.rs",
            "//! cases\n\nuse crate::commands::cli::CliError;\n",
        ),
        ("commands/mod.rs", "pub mod cli;\n"),
        ("commands/cli.rs", "pub struct CliError;\n"),
    ]);
    let problems = check(&files);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("src/case/mod.rs:3 imports crate::commands::cli::CliError"),
        "{}",
        problems[0]
    );
    assert!(
        problems[0].contains("case may not import commands"),
        "{}",
        problems[0]
    );
}

#[test]
fn grouped_super_and_expression_paths_are_followed() {
    let files = tree(&[
        ("lib.rs", ""),
        ("worker/mod.rs", "pub mod job;\n"),
        (
            "worker/job.rs",
            "use super::{execute, super::client::{signature::Verdict, x}};\n",
        ),
        (
            "worker/execute.rs",
            "fn f() { crate::hunt::campaign::run(); }\n",
        ),
        ("client/mod.rs", ""),
        ("client/signature.rs", ""),
        ("hunt/mod.rs", ""),
        ("hunt/campaign.rs", ""),
    ]);
    let problems = check(&files);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("src/worker/execute.rs:1 imports crate::hunt::campaign::run"));
    assert!(problems[1].contains("src/worker/job.rs:1 imports crate::client::signature::Verdict"));
    // `x` is no file of its own: the path reaches the folder's `mod.rs`.
    assert!(
        problems[2].contains("src/worker/job.rs:1 imports crate::client::x (src/client/mod.rs)")
    );
}

#[test]
fn comments_strings_and_test_modules_are_not_imports() {
    let files = tree(&[
        ("lib.rs", ""),
        (
            "case/mod.rs",
            "//! see [`crate::commands::cli`]\n/* crate::commands::cli */\nconst S: &str = \"crate::commands::cli\";\nfn f<'a>(c: char) -> bool { c == '{' }\n#[cfg(test)]\nmod tests {\n    use crate::commands::cli;\n    fn g() { let _ = \"}\"; }\n}\n",
        ),
        ("case/tests.rs", "use crate::commands::cli;\n"),
        ("commands/mod.rs", ""),
        ("commands/cli.rs", ""),
    ]);
    assert_eq!(check(&files), Vec::<String>::new());
}

#[test]
fn a_cycle_of_four_files_fails_and_one_of_three_passes() {
    let ring = |n: usize| {
        let mut files = vec![("lib.rs".to_string(), String::new())];
        for k in 0..n {
            files.push((
                format!("hunt/f{k}.rs"),
                format!("use crate::hunt::f{}::X;\n", (k + 1) % n),
            ));
        }
        files.into_iter().collect::<BTreeMap<_, _>>()
    };
    assert_eq!(check(&ring(3)), Vec::<String>::new());
    let problems = check(&ring(4));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("an import cycle of 4 files"),
        "{}",
        problems[0]
    );
}

#[test]
fn a_file_outside_every_layer_fails() {
    let files = tree(&[("lib.rs", ""), ("misc.rs", "")]);
    let problems = check(&files);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("src/misc.rs is in no layer"));
}

#[test]
fn a_parent_importing_its_children_by_plain_paths_closes_their_cycle() {
    // The children reach the parent through `super::`; the parent reaches them by plain relative
    // paths (`use a::X`, `pub use b::Y`), which name a child declared by `mod a;` in that file.
    let files = tree(&[
        ("lib.rs", "pub mod worker;\n"),
        ("worker/mod.rs", "pub mod exec;\n"),
        (
            "worker/exec/mod.rs",
            "mod a;\npub(crate) mod b;\n#[cfg(test)]\nmod c;\n\nuse a::A;\npub use b::{B, self as bee};\nuse c::C;\npub struct Shared;\n",
        ),
        ("worker/exec/a.rs", "use super::{Shared, b::B};\n"),
        ("worker/exec/b.rs", "use super::Shared;\nuse super::c::C;\n"),
        ("worker/exec/c.rs", "use super::Shared;\n"),
    ]);
    let problems = check(&files);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        problems[0],
        "an import cycle of 4 files (at most 3): worker/exec/a.rs, worker/exec/b.rs, worker/exec/c.rs, worker/exec/mod.rs",
    );
    // A plain path whose first name is no child of the file (an outside crate) is no edge.
    let outside = tree(&[
        ("lib.rs", ""),
        ("worker/mod.rs", "use serde::Serialize;\nuse exec::X;\n"),
        ("worker/exec.rs", "use super::Y;\n"),
    ]);
    assert_eq!(
        imports(&outside)
            .iter()
            .map(|i| format!("{} -> {}", i.from, i.to))
            .collect::<Vec<_>>(),
        ["worker/exec.rs -> worker/mod.rs"],
    );
}

#[test]
fn names_that_contain_as_are_whole_and_renamings_are_followed() {
    // `case` and `classify` contain the letters `as`: the path must not be cut there.
    let files = tree(&[
        ("lib.rs", ""),
        (
            "isolate/mod.rs",
            "use crate::case::{Case as C, classify};\n",
        ),
        ("case/mod.rs", ""),
        ("worker/mod.rs", "use crate::client::classify as decide;\n"),
        ("client/mod.rs", ""),
        ("client/classify.rs", ""),
    ]);
    let problems = check(&files);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("src/isolate/mod.rs:1 imports crate::case::Case (src/case/mod.rs)"),
        "{}",
        problems[0]
    );
    assert!(
        problems[1].starts_with(
            "src/worker/mod.rs:1 imports crate::client::classify (src/client/classify.rs)"
        ),
        "{}",
        problems[1]
    );
}

#[test]
fn a_module_declared_with_a_path_attribute_is_its_file() {
    // `super::os` names `isolate/linux.rs`, not the folder's `mod.rs`: no cycle through `mod.rs`.
    let files = tree(&[
        ("lib.rs", ""),
        (
            "isolate/mod.rs",
            "#[path = \"linux.rs\"]\nmod os;\nmod group;\npub use group::run;\n",
        ),
        ("isolate/linux.rs", ""),
        ("isolate/group.rs", "use super::os;\n"),
    ]);
    let edges: Vec<String> = imports(&files)
        .iter()
        .map(|i| format!("{} -> {}", i.from, i.to))
        .collect();
    assert_eq!(
        edges,
        [
            "isolate/group.rs -> isolate/linux.rs",
            "isolate/mod.rs -> isolate/group.rs",
        ],
    );
}
