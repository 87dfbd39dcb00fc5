//! DynamoDB as AWS bills it: write units from the larger of an item's old and new images
//! (kept in a shadow copy), doubled in transactions, plus each index entry a write creates,
//! changes or removes; read units from the returned items.

use serde_json::{Map, Value};

use super::{IndexSpec, State};

/// DynamoDB's size of an attribute value (DynamoDB-JSON form).
pub(super) fn value_size(v: &Value) -> usize {
    let Some(obj) = v.as_object() else { return 0 };
    let Some((kind, inner)) = obj.iter().next() else {
        return 0;
    };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        "N" => inner.as_str().map_or(1, |n| n.len().div_ceil(2) + 1),
        "B" => inner.as_str().map_or(0, |b| b.len() * 3 / 4),
        "BOOL" | "NULL" => 1,
        "SS" | "NS" | "BS" => inner.as_array().map_or(0, |a| {
            a.iter().map(|s| s.as_str().map_or(0, str::len)).sum()
        }),
        "L" => {
            3 + inner
                .as_array()
                .map_or(0, |a| a.iter().map(|x| 1 + value_size(x)).sum())
        }
        "M" => 3 + inner.as_object().map_or(0, |m| item_size(m) + m.len()),
        _ => 0,
    }
}

pub(super) fn item_size(item: &Map<String, Value>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

pub(super) fn units(bytes: usize, unit: usize) -> f64 {
    bytes.div_ceil(unit).max(1) as f64
}

fn key_of(item: &Map<String, Value>) -> (String, String) {
    let get = |k: &str| {
        item.get(k)
            .and_then(|v| v.get("S"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    (get("pk"), get("sk"))
}

/// The index entry of `item` (keys and projected attributes), if it has the index keys.
fn index_entry(spec: &IndexSpec, item: &Map<String, Value>) -> Option<Map<String, Value>> {
    if !spec.keys.iter().all(|k| item.contains_key(k)) {
        return None;
    }
    Some(match &spec.include {
        None => item.clone(),
        Some(include) => item
            .iter()
            .filter(|(k, _)| {
                *k == "pk" || *k == "sk" || spec.keys.contains(k) || include.contains(k)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

fn index_wru(
    indexes: &[IndexSpec],
    old: Option<&Map<String, Value>>,
    new: Option<&Map<String, Value>>,
) -> f64 {
    let mut wru = 0.0;
    for spec in indexes {
        let before = old.and_then(|i| index_entry(spec, i));
        let after = new.and_then(|i| index_entry(spec, i));
        let keys_of = |e: &Map<String, Value>| -> Vec<Value> {
            spec.keys.iter().map(|k| e[k].clone()).collect()
        };
        wru += match (before, after) {
            (None, None) => 0.0,
            (Some(b), None) => units(item_size(&b), 1024),
            (None, Some(a)) => units(item_size(&a), 1024),
            (Some(b), Some(a)) if keys_of(&b) != keys_of(&a) => {
                units(item_size(&b), 1024) + units(item_size(&a), 1024)
            }
            (Some(b), Some(a)) if b != a => units(item_size(&a), 1024),
            _ => 0.0,
        };
    }
    wru
}

enum Write {
    Put(Map<String, Value>),
    Update(Map<String, Value>, Value),
    Delete(Map<String, Value>),
    Check,
}

fn apply_update(mut item: Map<String, Value>, update: &Value) -> Map<String, Value> {
    let expr = update
        .get("UpdateExpression")
        .and_then(Value::as_str)
        .unwrap_or("");
    let names = update
        .get("ExpressionAttributeNames")
        .cloned()
        .unwrap_or_default();
    let values = update
        .get("ExpressionAttributeValues")
        .cloned()
        .unwrap_or_default();
    let name = |n: &str| -> String {
        let n = n.trim();
        names
            .get(n)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| n.to_owned())
    };
    let mut clause = "";
    let mut rest = expr;
    let keywords = ["SET ", "REMOVE ", "ADD ", "DELETE "];
    while !rest.trim().is_empty() {
        let trimmed = rest.trim_start();
        if let Some(k) = keywords
            .iter()
            .find(|k| trimmed.to_ascii_uppercase().starts_with(**k))
        {
            clause = k.trim();
            rest = &trimmed[k.len()..];
        }
        let end = keywords
            .iter()
            .filter_map(|k| rest.to_ascii_uppercase().find(&format!(" {k}")))
            .min()
            .unwrap_or(rest.len());
        let body = &rest[..end];
        rest = &rest[end..];
        for part in body.split(',') {
            match clause {
                "SET" => {
                    if let Some((path, value)) = part.split_once('=') {
                        let value = value.trim();
                        if let Some(v) = values.get(value) {
                            item.insert(name(path), v.clone());
                        } else if let Some(arg) = value
                            .strip_prefix("if_not_exists(")
                            .and_then(|v| v.split(',').nth(1))
                        {
                            let arg = arg.trim().trim_end_matches(')');
                            if let Some(v) = values.get(arg) {
                                item.entry(name(path)).or_insert_with(|| v.clone());
                            }
                        }
                    }
                }
                "REMOVE" => {
                    item.remove(&name(part));
                }
                _ => {}
            }
        }
        if clause.is_empty() {
            break;
        }
    }
    item
}

fn write_cost(
    state: &mut State,
    indexes: &[IndexSpec],
    write: Write,
    transactional: bool,
    ok: bool,
) {
    let factor = if transactional { 2.0 } else { 1.0 };
    let (key, new) = match &write {
        Write::Put(item) => (key_of(item), Some(item.clone())),
        Write::Update(key, update) => {
            let old = state
                .shadow
                .get(&key_of(key))
                .cloned()
                .unwrap_or_else(|| key.clone());
            (key_of(key), Some(apply_update(old, update)))
        }
        Write::Delete(key) => (key_of(key), None),
        Write::Check => {
            state.totals.table_wru += factor;
            return;
        }
    };
    let old = state.shadow.get(&key);
    let size = old
        .map(item_size)
        .unwrap_or(0)
        .max(new.as_ref().map(item_size).unwrap_or(0));
    state.totals.table_wru += factor * units(size, 1024);
    if !ok {
        return;
    }
    state.totals.index_wru += index_wru(indexes, old, new.as_ref());
    match new {
        Some(item) => {
            state.shadow.insert(key, item);
        }
        None => {
            state.shadow.remove(&key);
        }
    }
}

fn obj(v: Option<&Value>) -> Map<String, Value> {
    v.and_then(Value::as_object).cloned().unwrap_or_default()
}

fn read_cost(state: &mut State, items: &[&Map<String, Value>], consistent: bool, per_item: bool) {
    let half = if consistent { 1.0 } else { 0.5 };
    let sizes: Vec<usize> = items.iter().map(|i| item_size(i)).collect();
    let total: usize = sizes.iter().sum();
    state.totals.bytes_read += total as u64;
    state.totals.rru += if per_item {
        sizes.iter().map(|s| units(*s, 4096) * half).sum()
    } else {
        units(total, 4096) * half
    };
}

pub(super) fn dynamodb(
    state: &mut State,
    indexes: &[IndexSpec],
    operation: &str,
    request: &Value,
    response: &Value,
    ok: bool,
) {
    let consistent = request
        .get("ConsistentRead")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        && request.get("IndexName").is_none();
    match operation {
        "PutItem" => write_cost(
            state,
            indexes,
            Write::Put(obj(request.get("Item"))),
            false,
            ok,
        ),
        "UpdateItem" => write_cost(
            state,
            indexes,
            Write::Update(obj(request.get("Key")), request.clone()),
            false,
            ok,
        ),
        "DeleteItem" => write_cost(
            state,
            indexes,
            Write::Delete(obj(request.get("Key"))),
            false,
            ok,
        ),
        "TransactWriteItems" => {
            for item in request
                .get("TransactItems")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                let write = if let Some(put) = item.get("Put") {
                    Write::Put(obj(put.get("Item")))
                } else if let Some(update) = item.get("Update") {
                    Write::Update(obj(update.get("Key")), update.clone())
                } else if let Some(delete) = item.get("Delete") {
                    Write::Delete(obj(delete.get("Key")))
                } else {
                    Write::Check
                };
                write_cost(state, indexes, write, true, ok);
            }
        }
        "BatchWriteItem" => {
            for writes in request
                .get("RequestItems")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
                .values()
                .filter_map(Value::as_array)
            {
                for w in writes {
                    let write = match (w.get("PutRequest"), w.get("DeleteRequest")) {
                        (Some(p), _) => Write::Put(obj(p.get("Item"))),
                        (_, Some(d)) => Write::Delete(obj(d.get("Key"))),
                        _ => continue,
                    };
                    write_cost(state, indexes, write, false, ok);
                }
            }
        }
        "GetItem" => {
            let item = obj(response.get("Item"));
            read_cost(state, &[&item], consistent, true);
        }
        "BatchGetItem" => {
            let tables = obj(response.get("Responses"));
            let items: Vec<&Map<String, Value>> = tables
                .values()
                .filter_map(Value::as_array)
                .flatten()
                .filter_map(Value::as_object)
                .collect();
            read_cost(state, &items, false, true);
        }
        "Query" | "Scan" => {
            let items: Vec<&Map<String, Value>> = response
                .get("Items")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_object).collect())
                .unwrap_or_default();
            read_cost(state, &items, consistent, false);
        }
        _ => {}
    }
}
