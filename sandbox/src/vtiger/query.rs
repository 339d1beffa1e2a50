//! VTQL queries and the `sync` feed over the emulated records.

use jiff::civil::DateTime;
use serde_json::{json, Map, Value};

use super::describe::{EVENTS_PREFIX, EVENT_FIELDS, NUMERIC_FIELDS, REFERENCE_FIELDS, USER_FIELDS};
use super::store::{split_id, value_text, ws_id, Store, StoredEvent, WsError};
use super::vtql::{self, Columns, Condition, Op};

/// Rendered rows of one module, with the record number to break ties.
type Rows = Vec<(u64, Map<String, Value>)>;

impl Store {
    // ---- query ---------------------------------------------------------------------------

    pub fn query(&self, text: &str, user: u64) -> Result<Value, WsError> {
        let query =
            vtql::parse(text).map_err(|message| WsError::new("QUERY_SYNTAX_ERROR", message))?;
        let (known, rows): (&[&str], Rows) = match query.module.as_str() {
            "Events" => (
                &EVENT_FIELDS,
                self.events
                    .values()
                    .filter(|event| !event.deleted && self.can_see(user, event))
                    .filter(|event| {
                        let kind = event.fields.get("activitytype").map(String::as_str);
                        !matches!(kind, Some("Task") | Some("Emails"))
                    })
                    .map(|event| (event.crmid, self.render(event, user, false)))
                    .collect(),
            ),
            // Tasks: this CRM has none.
            "Calendar" => (&EVENT_FIELDS, Vec::new()),
            "Users" => (
                &USER_FIELDS,
                self.users
                    .values()
                    .filter(|found| self.is_admin(user) || found.id == user)
                    .map(|found| (found.id, self.render_user(found)))
                    .collect(),
            ),
            other => {
                return Err(WsError::new(
                    "ACCESS_DENIED",
                    format!("Permission to perform the operation is denied for query on {other}"),
                ))
            }
        };
        let mentioned = query
            .filter
            .iter()
            .flatten()
            .map(|condition| condition.column.as_str())
            .chain(query.order.iter().map(|(column, _)| column.as_str()))
            .chain(match &query.columns {
                Columns::Some(columns) => columns.iter().map(String::as_str).collect(),
                _ => Vec::new(),
            });
        for column in mentioned {
            if !known.contains(&column) {
                return Err(WsError::new(
                    "ACCESS_DENIED",
                    format!("Permission to read given fields is denied: {column}"),
                ));
            }
        }
        for condition in query.filter.iter().flatten() {
            if REFERENCE_FIELDS.contains(&condition.column.as_str())
                && condition
                    .values
                    .iter()
                    .any(|value| split_id(value).is_none())
            {
                return Err(WsError::bad_id());
            }
        }
        let mut rows: Rows = rows
            .into_iter()
            .filter(|(_, row)| {
                query.filter.is_empty()
                    || query
                        .filter
                        .iter()
                        .any(|group| group.iter().all(|condition| matches(row, condition)))
            })
            .collect();
        rows.sort_by(|(a_id, a), (b_id, b)| {
            for (column, descending) in &query.order {
                let ordering = compare(column, &text_of(a, column), &text_of(b, column));
                let ordering = if *descending {
                    ordering.reverse()
                } else {
                    ordering
                };
                if ordering != std::cmp::Ordering::Equal {
                    return ordering;
                }
            }
            a_id.cmp(b_id)
        });
        if query.columns == Columns::Count {
            return Ok(json!([{"count": rows.len().to_string()}]));
        }
        let limit = query.limit.unwrap_or(100).min(100);
        let page = rows.into_iter().skip(query.offset).take(limit);
        let result: Vec<Value> = page
            .map(|(_, row)| match &query.columns {
                Columns::Some(columns) => {
                    let mut out = Map::new();
                    for column in columns {
                        out.insert(
                            column.clone(),
                            row.get(column).cloned().unwrap_or(json!("")),
                        );
                    }
                    if !out.contains_key("id") {
                        out.insert("id".to_owned(), row.get("id").cloned().unwrap_or(json!("")));
                    }
                    Value::Object(out)
                }
                _ => Value::Object(row),
            })
            .collect();
        Ok(Value::Array(result))
    }

    // ---- sync ----------------------------------------------------------------------------

    /// `sync`, the vtiger 8 algorithm. `None` stands for the PHP fatal errors seen on a real
    /// install (missing elementType, modifiedTime 0).
    pub fn sync(
        &self,
        modified_time: &str,
        element_type: Option<&str>,
        sync_type: Option<&str>,
        user: u64,
    ) -> Option<Result<Value, WsError>> {
        let element_type = element_type.filter(|value| !value.is_empty())?;
        let since: i64 = modified_time
            .trim()
            .parse()
            .ok()
            .filter(|value| *value > 0)?;
        let sync_type = if self.honour_sync_type {
            sync_type.unwrap_or("user")
        } else {
            "user"
        };
        let all_owners = match sync_type {
            "application" if self.is_admin(user) => true,
            "application" => return Some(Err(WsError::denied())),
            _ => false,
        };
        let events: Vec<&StoredEvent> = match element_type {
            "Events" => self
                .events
                .values()
                .filter(|event| all_owners || event.owner == user)
                .collect(),
            "Calendar" => Vec::new(),
            other => {
                return Some(Err(WsError::new(
                    "ACCESS_DENIED",
                    format!("Permission to perform the operation is denied for {other}"),
                )))
            }
        };
        // Compared as DB-zone wall-clock text, as MySQL does.
        let floor = self.civil_of(since);
        let mut times: Vec<DateTime> = events
            .iter()
            .map(|event| event.modified)
            .filter(|at| *at > floor)
            .collect();
        times.sort();
        let ceiling = times.get(99).or(times.last()).copied();
        let (updated, deleted, more, last) = match ceiling {
            None => (Vec::new(), Vec::new(), false, since),
            Some(ceiling) => {
                let mut batch: Vec<&StoredEvent> = events
                    .iter()
                    .copied()
                    .filter(|event| event.modified > floor && event.modified <= ceiling)
                    .collect();
                batch.sort_by_key(|event| (event.modified, event.crmid));
                let updated: Vec<Value> = batch
                    .iter()
                    .filter(|event| !event.deleted)
                    .map(|event| Value::Object(self.render(event, user, false)))
                    .collect();
                let deleted: Vec<Value> = batch
                    .iter()
                    .filter(|event| event.deleted)
                    .map(|event| json!(ws_id(EVENTS_PREFIX, event.crmid)))
                    .collect();
                let more = events.iter().any(|event| event.modified > ceiling);
                (updated, deleted, more, self.epoch_of(ceiling))
            }
        };
        Some(Ok(json!({
            "updated": updated,
            "deleted": deleted,
            "more": more,
            "lastModifiedTime": last,
        })))
    }
}

fn text_of(row: &Map<String, Value>, column: &str) -> String {
    row.get(column).map(value_text).unwrap_or_default()
}

/// Compare two stored values the way MySQL would for that column.
fn compare(column: &str, a: &str, b: &str) -> std::cmp::Ordering {
    if REFERENCE_FIELDS.contains(&column) {
        let number = |text: &str| split_id(text).map(|(_, n)| n).unwrap_or(0);
        return number(a).cmp(&number(b));
    }
    if NUMERIC_FIELDS.contains(&column) {
        if let (Ok(a), Ok(b)) = (a.trim().parse::<i64>(), b.trim().parse::<i64>()) {
            return a.cmp(&b);
        }
    }
    a.to_lowercase().cmp(&b.to_lowercase())
}

fn matches(row: &Map<String, Value>, condition: &Condition) -> bool {
    let actual = text_of(row, &condition.column);
    let first = condition.values.first().map(String::as_str).unwrap_or("");
    let ordering = || compare(&condition.column, &actual, first);
    match condition.op {
        Op::Eq => ordering().is_eq(),
        Op::Ne => ordering().is_ne(),
        Op::Lt => ordering().is_lt(),
        Op::Gt => ordering().is_gt(),
        Op::Le => ordering().is_le(),
        Op::Ge => ordering().is_ge(),
        Op::Like => vtql::like(&actual, first),
        Op::In => condition
            .values
            .iter()
            .any(|value| compare(&condition.column, &actual, value).is_eq()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_uses_numbers_for_ids() {
        assert!(compare("id", "18x9", "18x10").is_lt());
        assert!(compare("subject", "b", "A").is_gt());
        assert!(compare("reminder_time", "9", "10").is_lt());
    }
}
