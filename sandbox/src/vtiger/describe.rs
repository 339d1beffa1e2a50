//! The stock Events module: its fields in `describe` order, and the describe answer.

use serde_json::{json, Value};

pub const EVENTS_PREFIX: u64 = 18;
pub const USERS_PREFIX: u64 = 19;
pub const GROUPS_PREFIX: u64 = 20;
/// Tasks share storage with events but answer under this prefix.
pub const CALENDAR_PREFIX: u64 = 9;

/// Mandatory for create and update, in the order vtiger checks them.
pub const MANDATORY: [&str; 9] = [
    "subject",
    "assigned_user_id",
    "date_start",
    "time_start",
    "due_date",
    "time_end",
    "duration_hours",
    "eventstatus",
    "activitytype",
];

/// Fields that hold webservice ids.
pub const REFERENCE_FIELDS: [&str; 5] = [
    "id",
    "assigned_user_id",
    "modifiedby",
    "parent_id",
    "contact_id",
];

/// Fields compared as numbers in VTQL.
pub const NUMERIC_FIELDS: [&str; 4] = [
    "duration_hours",
    "reminder_time",
    "sendnotification",
    "notime",
];

/// Every field of a record, in the order vtiger writes them.
pub const EVENT_FIELDS: [&str; 27] = [
    "subject",
    "assigned_user_id",
    "date_start",
    "time_start",
    "due_date",
    "time_end",
    "recurringtype",
    "duration_hours",
    "duration_minutes",
    "parent_id",
    "eventstatus",
    "sendnotification",
    "activitytype",
    "location",
    "createdtime",
    "modifiedtime",
    "taskpriority",
    "notime",
    "visibility",
    "modifiedby",
    "description",
    "reminder_time",
    "contact_id",
    "source",
    "starred",
    "tags",
    "id",
];

/// Fields a write may set directly (the rest are computed or read-only).
pub const WRITABLE: [&str; 20] = [
    "subject",
    "date_start",
    "time_start",
    "due_date",
    "time_end",
    "recurringtype",
    "duration_hours",
    "duration_minutes",
    "parent_id",
    "eventstatus",
    "sendnotification",
    "activitytype",
    "location",
    "taskpriority",
    "notime",
    "visibility",
    "description",
    "contact_id",
    "source",
    "tags",
];

pub const USER_FIELDS: [&str; 10] = [
    "user_name",
    "first_name",
    "last_name",
    "email1",
    "status",
    "is_admin",
    "time_zone",
    "date_format",
    "hour_format",
    "id",
];

fn picklist(values: &[(&str, &str)], default: &str) -> Value {
    json!({
        "picklistValues": values.iter().map(|(label, value)| json!({"label": label, "value": value})).collect::<Vec<_>>(),
        "defaultValue": default,
        "name": "picklist",
    })
}

fn field(name: &str, label: &str, mandatory: bool, kind: Value) -> Value {
    json!({
        "name": name,
        "label": label,
        "mandatory": mandatory,
        "type": kind,
        "isunique": false,
        "nullable": !mandatory,
        "editable": true,
        "default": "",
    })
}

fn simple(name: &str) -> Value {
    json!({ "name": name })
}

/// `describe` for Events, with the user's date format on date fields.
pub fn events(date_format: &str) -> Value {
    let date = json!({"format": date_format, "name": "date"});
    let fields = vec![
        field("subject", "Subject", true, simple("string")),
        field("assigned_user_id", "Assigned To", true, simple("owner")),
        field("date_start", "Start Date & Time", true, date.clone()),
        field("time_start", "Time Start", true, simple("time")),
        field("due_date", "End Date", true, date),
        field("time_end", "End Time", true, simple("time")),
        field(
            "recurringtype",
            "Repeat",
            false,
            picklist(
                &[
                    ("Day(s)", "Daily"),
                    ("Week(s)", "Weekly"),
                    ("Month(s)", "Monthly"),
                    ("Year", "Yearly"),
                ],
                "Daily",
            ),
        ),
        field("duration_hours", "Duration", true, simple("integer")),
        field(
            "duration_minutes",
            "Duration Minutes",
            false,
            picklist(
                &[("00", "00"), ("15", "15"), ("30", "30"), ("45", "45")],
                "00",
            ),
        ),
        field(
            "parent_id",
            "Related To",
            false,
            json!({"refersTo": ["Accounts", "Campaigns", "HelpDesk", "Invoice", "Leads", "Potentials", "PurchaseOrder", "Quotes", "SalesOrder"], "name": "reference"}),
        ),
        field(
            "eventstatus",
            "Status",
            true,
            picklist(
                &[
                    ("Planned", "Planned"),
                    ("Held", "Held"),
                    ("Not Held", "Not Held"),
                ],
                "Planned",
            ),
        ),
        field(
            "sendnotification",
            "Send Notification",
            false,
            simple("boolean"),
        ),
        field(
            "activitytype",
            "Activity Type",
            true,
            picklist(
                &[
                    ("Call", "Call"),
                    ("Meeting", "Meeting"),
                    ("Mobile Call", "Mobile Call"),
                ],
                "Call",
            ),
        ),
        field("location", "Location", false, simple("string")),
        field("createdtime", "Created Time", false, simple("datetime")),
        field("modifiedtime", "Modified Time", false, simple("datetime")),
        field(
            "taskpriority",
            "Priority",
            false,
            picklist(
                &[("High", "High"), ("Medium", "Medium"), ("Low", "Low")],
                "High",
            ),
        ),
        field("notime", "No Time", false, simple("boolean")),
        field(
            "visibility",
            "Visibility",
            false,
            picklist(&[("Private", "Private"), ("Public", "Public")], "Private"),
        ),
        field(
            "modifiedby",
            "Last Modified By",
            false,
            json!({"refersTo": ["Users"], "name": "reference"}),
        ),
        field("description", "Description", false, simple("text")),
        field("reminder_time", "Send Reminder", false, simple("integer")),
        field(
            "contact_id",
            "Contact Name",
            false,
            json!({"refersTo": ["Contacts"], "name": "reference"}),
        ),
        field("source", "Source", false, simple("string")),
        field("starred", "Starred", false, simple("boolean")),
        field("tags", "tags", false, simple("string")),
        field("id", "id", false, simple("autogenerated")),
    ];
    json!({
        "label": "Events",
        "name": "Events",
        "createable": true,
        "updateable": true,
        "deleteable": true,
        "retrieveable": true,
        "fields": fields,
        "idPrefix": EVENTS_PREFIX.to_string(),
        "isEntity": true,
        "allowDuplicates": false,
        "labelFields": "subject",
    })
}

/// `listtypes`: the modules an admin of a stock install sees (abridged).
pub fn list_types() -> Value {
    let entities = [
        ("Calendar", "Calendar", "Task"),
        ("Leads", "Leads", "Lead"),
        ("Accounts", "Organizations", "Organization"),
        ("Contacts", "Contacts", "Contact"),
        ("Events", "Events", "Event"),
        ("Users", "Users", "User"),
    ];
    let mut information = serde_json::Map::new();
    for (name, label, singular) in entities {
        information.insert(
            name.to_owned(),
            json!({"isEntity": true, "label": label, "singular": singular}),
        );
    }
    information.insert(
        "Groups".to_owned(),
        json!({"isEntity": false, "label": "Groups", "singular": "Groups"}),
    );
    let mut types: Vec<&str> = entities.iter().map(|(name, _, _)| *name).collect();
    types.push("Groups");
    json!({"types": types, "information": information})
}
