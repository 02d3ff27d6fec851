//! Rendering nft scripts from plain data, for every table netd owns (the
//! nftables dataplane's and the host's): table definitions, in-place syncs,
//! element diffs, removal, element writers. No I/O: every script is text,
//! unit-tested by the modules that lay out their tables, and one `nft -f -`
//! batch (one transaction) when [`super::Nft::apply`] runs it.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
};

/// The owner tag on every table, set, map, counter, chain and rule.
pub const OWNER: &str = "netd";

/// The part of a table that changes: counters and set (or map) elements, in
/// nft's syntax. Two contents are compared to change a table by elements
/// only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content {
    pub counters: BTreeSet<String>,
    pub elements: BTreeMap<&'static str, BTreeSet<String>>,
}

/// A set or map declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetDecl {
    pub name: &'static str,
    /// "set" or "map".
    pub kind: &'static str,
    /// `type ...` or `typeof ...`, with `flags` if any (one per line).
    pub spec: &'static [&'static str],
}

/// A base chain and its rules (without the owner comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDecl {
    pub name: &'static str,
    pub hook: &'static str,
    pub rules: Vec<String>,
}

/// Everything but the elements: what a drift check compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub table: &'static str,
    pub sets: &'static [SetDecl],
    pub chains: Vec<ChainDecl>,
}

/// Changes a table from `old` to `new` by elements and counters only:
/// counters first added, then elements removed and added, then counters
/// deleted (once no map element refers to them). Empty when equal.
pub fn diff_script(table: &str, old: &Content, new: &Content) -> String {
    let mut out = String::new();
    for counter in new.counters.difference(&old.counters) {
        let _ = writeln!(
            out,
            "add counter {table} {counter} {{ comment \"{OWNER}\"; }}"
        );
    }
    let empty = BTreeSet::new();
    let sets: BTreeSet<&str> = old
        .elements
        .keys()
        .chain(new.elements.keys())
        .copied()
        .collect();
    for set in &sets {
        let before = old.elements.get(set).unwrap_or(&empty);
        let after = new.elements.get(set).unwrap_or(&empty);
        let gone: Vec<&String> = before.difference(after).collect();
        write_elements(&mut out, "delete", table, set, gone);
    }
    for set in &sets {
        let before = old.elements.get(set).unwrap_or(&empty);
        let after = new.elements.get(set).unwrap_or(&empty);
        let added: Vec<&String> = after.difference(before).collect();
        write_elements(&mut out, "add", table, set, added);
    }
    for counter in old.counters.difference(&new.counters) {
        let _ = writeln!(out, "delete counter {table} {counter}");
    }
    out
}

/// `table FAMILY NAME { ... }` with every object tagged.
pub fn table_definition(layout: &Layout, content: &Content) -> String {
    let mut out = String::new();
    write_table_start(&mut out, layout.table, OWNER);
    for counter in &content.counters {
        let _ = writeln!(out, "\tcounter {counter} {{");
        let _ = writeln!(out, "\t\tcomment \"{OWNER}\"");
        out.push_str("\t}\n");
    }
    let no_elements = BTreeSet::new();
    for set in layout.sets {
        let elements = content.elements.get(set.name).unwrap_or(&no_elements);
        write_set(&mut out, set, Some(OWNER), elements);
    }
    for chain in &layout.chains {
        write_chain(&mut out, chain.name, chain.hook, Some(OWNER), &chain.rules);
    }
    out.push_str("}\n");
    out
}

/// `table FAMILY NAME {` and the table's comment; the caller closes it.
pub fn write_table_start(out: &mut String, table: &str, comment: &str) {
    let _ = writeln!(out, "table {table} {{");
    let _ = writeln!(out, "\tcomment \"{comment}\"");
}

/// A set or map inside a table definition, with its comment if any and its
/// elements (in the order given) if any.
pub fn write_set<S: AsRef<str>>(
    out: &mut String,
    set: &SetDecl,
    comment: Option<&str>,
    elements: impl IntoIterator<Item = S>,
) {
    let _ = writeln!(out, "\t{} {} {{", set.kind, set.name);
    for line in set.spec {
        let _ = writeln!(out, "\t\t{line}");
    }
    if let Some(comment) = comment {
        let _ = writeln!(out, "\t\tcomment \"{comment}\"");
    }
    let list: Vec<S> = elements.into_iter().collect();
    if !list.is_empty() {
        let list: Vec<&str> = list.iter().map(AsRef::as_ref).collect();
        let _ = writeln!(out, "\t\telements = {{ {} }}", list.join(", "));
    }
    out.push_str("\t}\n");
}

/// A base chain inside a table definition, with its comment if any; every
/// rule is tagged [`OWNER`] (the drift check counts netd's rules by it).
pub fn write_chain<S: AsRef<str>>(
    out: &mut String,
    name: &str,
    hook: &str,
    comment: Option<&str>,
    rules: &[S],
) {
    let _ = writeln!(out, "\tchain {name} {{");
    // A regular chain (jumped to) has no hook.
    if !hook.is_empty() {
        let _ = writeln!(out, "\t\t{hook}");
    }
    if let Some(comment) = comment {
        let _ = writeln!(out, "\t\tcomment \"{comment}\"");
    }
    for rule in rules {
        let _ = writeln!(out, "\t\t{} comment \"{OWNER}\"", rule.as_ref());
    }
    out.push_str("\t}\n");
}

/// An in-place sync: the table, its counters, sets and chains added if
/// missing (counters keep counting), every set present in
/// `content.elements` flushed and refilled, every chain flushed and
/// refilled, in one transaction. Sets absent from `content.elements` are
/// created if missing but not flushed.
pub fn in_place_script(layout: &Layout, content: &Content) -> String {
    let table = layout.table;
    let mut out = String::new();
    let _ = writeln!(out, "add table {table} {{ comment \"{OWNER}\"; }}");
    for counter in &content.counters {
        let _ = writeln!(
            out,
            "add counter {table} {counter} {{ comment \"{OWNER}\"; }}"
        );
    }
    for set in layout.sets {
        let _ = writeln!(
            out,
            "add {} {table} {} {{ {}; comment \"{OWNER}\"; }}",
            set.kind,
            set.name,
            set.spec.join("; ")
        );
        if let Some(elements) = content.elements.get(set.name) {
            let _ = writeln!(out, "flush {} {table} {}", set.kind, set.name);
            write_elements(&mut out, "add", table, set.name, elements);
        }
    }
    for chain in &layout.chains {
        let _ = writeln!(
            out,
            "add chain {table} {} {{ {} comment \"{OWNER}\"; }}",
            chain.name, chain.hook
        );
        let _ = writeln!(out, "flush chain {table} {}", chain.name);
        for rule in &chain.rules {
            let _ = writeln!(
                out,
                "add rule {table} {} {rule} comment \"{OWNER}\"",
                chain.name
            );
        }
    }
    out
}

/// Deletes a table netd owns; a missing one is no error: the leading `add`
/// makes the `delete` work when there is no table yet.
pub fn remove_script(table: &str) -> String {
    format!("add table {table}\ndelete table {table}\n")
}

/// `VERB element TABLE SET { a, b }`; nothing for no elements (nft refuses
/// empty braces).
pub fn write_elements<S: AsRef<str>>(
    out: &mut String,
    verb: &str,
    table: &str,
    set: &str,
    elements: impl IntoIterator<Item = S>,
) {
    let list: Vec<S> = elements.into_iter().collect();
    if list.is_empty() {
        return;
    }
    let list: Vec<&str> = list.iter().map(AsRef::as_ref).collect();
    let _ = writeln!(
        out,
        "{verb} element {table} {set} {{ {} }}",
        list.join(", ")
    );
}
