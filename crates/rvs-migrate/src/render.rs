//! rvsd's configuration as the migration lays it out for a reader.
//!
//! The `toml` serializer writes the schema types; this only arranges what
//! it wrote (with `toml_edit`, which keeps everything but the layout): the
//! tables of a service (its group's members, sorry and real servers)
//! indented by their depth, long status-code lists
//! wrapped ten to a line, each `[[fwmark]]` rule under a comment saying
//! which firewall rule it comes from, and the commented `[[fwmark]]`
//! rules the operator must complete placed before the services.

use rvs_vocab::schema;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table};

/// Status codes per line of a wrapped list.
const CODES_PER_LINE: usize = 10;

/// `file` as TOML text, with `comments` (whole comment lines, each block
/// starting with a blank line) before the first `[[service]]`, and
/// `rule_comments[i]` (whole comment lines) above the `i`th `[[fwmark]]`.
pub(crate) fn render(file: &schema::Config, comments: &str, rule_comments: &[String]) -> String {
    // The schema is plain data: strings, numbers, booleans and tables.
    let text = match toml::to_string(file) {
        Ok(t) => t,
        Err(e) => unreachable!("rvsd's schema always serializes: {e}"),
    };
    let mut doc: DocumentMut = match text.parse() {
        Ok(d) => d,
        Err(e) => unreachable!("the toml crate's output parses: {e}"),
    };
    for (rule, comment) in tables_mut(doc.get_mut("fwmark")).zip(rule_comments) {
        rule.decor_mut().set_prefix(format!("\n{comment}"));
    }
    let mut placed = comments.is_empty();
    for service in tables_mut(doc.get_mut("service")) {
        let prefix = if placed {
            "\n".to_string()
        } else {
            format!("{comments}\n")
        };
        placed = true;
        service.decor_mut().set_prefix(prefix);
        if let Some(sorry) = service.get_mut("sorry_server").and_then(Item::as_table_mut) {
            indent(sorry, 1);
        }
        for member in tables_mut(service.get_mut("member")) {
            indent(member, 1);
        }
        for server in tables_mut(service.get_mut("real_server")) {
            indent(server, 1);
            for check in tables_mut(server.get_mut("check")) {
                indent(check, 2);
                wrap_codes(check);
            }
        }
    }
    let mut out = doc.to_string();
    if !placed {
        out.push_str(comments);
    }
    out
}

/// The tables of an array of tables (`[[name]]`), none if absent.
fn tables_mut(item: Option<&mut Item>) -> impl Iterator<Item = &mut Table> {
    item.and_then(Item::as_array_of_tables_mut)
        .map(ArrayOfTables::iter_mut)
        .into_iter()
        .flatten()
}

/// A blank line before the header, header and keys indented two spaces
/// per level below `[[service]]`.
fn indent(table: &mut Table, depth: usize) {
    let pad = "  ".repeat(depth);
    table.decor_mut().set_prefix(format!("\n{pad}"));
    for (mut key, item) in table.iter_mut() {
        if item.is_value() {
            key.leaf_decor_mut().set_prefix(pad.as_str());
        }
    }
}

/// A check's `status_codes` of more than ten codes, ten to a line.
fn wrap_codes(check: &mut Table) {
    let Some(codes) = check.get_mut("status_codes").and_then(Item::as_array_mut) else {
        return;
    };
    if codes.len() <= CODES_PER_LINE {
        return;
    }
    for (i, code) in codes.iter_mut().enumerate() {
        let prefix = if i % CODES_PER_LINE == 0 {
            "\n      "
        } else {
            " "
        };
        code.decor_mut().set_prefix(prefix);
    }
    codes.set_trailing_comma(true);
    codes.set_trailing("\n    ");
}
