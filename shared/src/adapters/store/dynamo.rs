//! The AWS adapter: one DynamoDB table with string keys `pk`/`sk` and TTL on `expires_at`.

use crate::adapters::aws::AwsError;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, DeleteRequest, KeySchemaElement,
    KeyType, Put, PutRequest, ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem,
    WriteRequest,
};
use aws_sdk_dynamodb::Client;
use serde_json::{Map, Number, Value};
use std::collections::HashMap;

use super::{
    next_version, now_epoch, validate_item, validate_transaction, validate_unconditional, Claim,
    Item, ItemStore, Precondition, StoreError, WriteOp,
};

/// DynamoDB's `BatchWriteItem` takes at most 25 requests.
const BATCH_WRITE_MAX: usize = 25;
/// How many times items DynamoDB left unprocessed (throttled) are sent again.
const UNPROCESSED_ATTEMPTS: u32 = 5;

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

type Attributes = HashMap<String, AttributeValue>;

/// A condition expression with its placeholders, ready to attach to a request.
struct Condition {
    expression: Option<String>,
    names: HashMap<String, String>,
    values: Attributes,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Creates the table (on demand, TTL on `expires_at`) unless it exists. Production tables come
    /// from the SAM template; this serves tests and local try-outs against an emulator.
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        let exists = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        if exists.is_ok() {
            return Ok(());
        }
        let key = |name: &str, key_type| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .map_err(StoreError::backend)
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(StoreError::backend)
        };
        self.client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .send()
            .await
            .map_err(sdk_err)?;
        let ttl = TimeToLiveSpecification::builder()
            .attribute_name("expires_at")
            .enabled(true)
            .build()
            .map_err(StoreError::backend)?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    fn key(pk: &str, sk: &str) -> Attributes {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
            ("sk".to_owned(), AttributeValue::S(sk.to_owned())),
        ])
    }
}

fn condition(precondition: Precondition, now: i64) -> Condition {
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let expression = match precondition {
        Precondition::None => None,
        Precondition::Absent | Precondition::Version(0) => {
            names.insert("#x".to_owned(), "expires_at".to_owned());
            values.insert(":now".to_owned(), AttributeValue::N(now.to_string()));
            Some("attribute_not_exists(pk) OR #x <= :now".to_owned())
        }
        Precondition::Exists => {
            names.insert("#x".to_owned(), "expires_at".to_owned());
            values.insert(":now".to_owned(), AttributeValue::N(now.to_string()));
            Some("attribute_exists(pk) AND (attribute_not_exists(#x) OR #x > :now)".to_owned())
        }
        Precondition::Version(v) => {
            names.insert("#v".to_owned(), "version".to_owned());
            values.insert(":v".to_owned(), AttributeValue::N(v.to_string()));
            Some("#v = :v".to_owned())
        }
    };
    Condition {
        expression,
        names,
        values,
    }
}

fn to_attributes(item: &Item, version: u64) -> Attributes {
    let mut attrs: Attributes = item
        .data
        .iter()
        .map(|(k, v)| (k.clone(), to_attribute(v)))
        .collect();
    attrs.insert("pk".into(), AttributeValue::S(item.pk.clone()));
    attrs.insert("sk".into(), AttributeValue::S(item.sk.clone()));
    attrs.insert("version".into(), AttributeValue::N(version.to_string()));
    if let Some(at) = item.expires_at {
        attrs.insert("expires_at".into(), AttributeValue::N(at.to_string()));
    }
    attrs
}

fn to_attribute(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(a) => AttributeValue::L(a.iter().map(to_attribute).collect()),
        Value::Object(o) => AttributeValue::M(
            o.iter()
                .map(|(k, v)| (k.clone(), to_attribute(v)))
                .collect(),
        ),
    }
}

fn from_attribute(value: &AttributeValue) -> Result<Value, StoreError> {
    Ok(match value {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => Value::Number(parse_number(n)?),
        AttributeValue::L(list) => {
            Value::Array(list.iter().map(from_attribute).collect::<Result<_, _>>()?)
        }
        AttributeValue::M(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), from_attribute(v)?)))
                .collect::<Result<Map<_, _>, StoreError>>()?,
        ),
        _ => {
            return Err(StoreError::Foreign(
                "an attribute of a type calsync never writes",
            ))
        }
    })
}

fn parse_number(n: &str) -> Result<Number, StoreError> {
    if let Ok(i) = n.parse::<i64>() {
        return Ok(i.into());
    }
    if let Ok(u) = n.parse::<u64>() {
        return Ok(u.into());
    }
    n.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .ok_or(StoreError::Foreign("a number that is not one"))
}

fn from_attributes(mut attrs: Attributes) -> Result<Item, StoreError> {
    let mut take_string = |name: &str| match attrs.remove(name) {
        Some(AttributeValue::S(s)) => Ok(s),
        _ => Err(StoreError::Foreign("an item without its string key")),
    };
    let pk = take_string("pk")?;
    let sk = take_string("sk")?;
    let number = |v: Option<AttributeValue>| match v {
        Some(AttributeValue::N(n)) => n.parse::<i64>().ok(),
        _ => None,
    };
    let version = number(attrs.remove("version")).unwrap_or(0) as u64;
    let expires_at = number(attrs.remove("expires_at"));
    let data = attrs
        .iter()
        .map(|(k, v)| Ok((k.clone(), from_attribute(v)?)))
        .collect::<Result<Map<_, _>, StoreError>>()?;
    Ok(Item {
        pk,
        sk,
        version,
        expires_at,
        data,
    })
}

fn sdk_err<E>(
    err: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    StoreError::backend(AwsError::from_sdk("DynamoDB", err))
}

fn is_condition_failure<E: ProvideErrorMetadata>(
    err: &aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> bool {
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

#[async_trait]
impl ItemStore for DynamoStore {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err)?;
        let Some(attrs) = out.item else {
            return Ok(None);
        };
        let item = from_attributes(attrs)?;
        Ok((!item.is_expired(now_epoch())).then_some(item))
    }

    async fn put(&self, item: &Item, precondition: Precondition) -> Result<u64, StoreError> {
        validate_item(item)?;
        let version = next_version(item, precondition);
        let cond = condition(precondition, now_epoch());
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_attributes(item, version)))
            .set_condition_expression(cond.expression)
            .set_expression_attribute_names((!cond.names.is_empty()).then_some(cond.names))
            .set_expression_attribute_values((!cond.values.is_empty()).then_some(cond.values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(version),
            Err(e) if is_condition_failure(&e) => Err(StoreError::ConditionFailed),
            Err(e) => Err(sdk_err(e)),
        }
    }

    async fn delete(
        &self,
        pk: &str,
        sk: &str,
        precondition: Precondition,
    ) -> Result<Option<Item>, StoreError> {
        let now = now_epoch();
        let cond = condition(precondition, now);
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, sk)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .set_condition_expression(cond.expression)
            .set_expression_attribute_names((!cond.names.is_empty()).then_some(cond.names))
            .set_expression_attribute_values((!cond.values.is_empty()).then_some(cond.values))
            .send()
            .await;
        match result {
            Ok(out) => match out.attributes {
                Some(attrs) if !attrs.is_empty() => {
                    let item = from_attributes(attrs)?;
                    Ok((!item.is_expired(now)).then_some(item))
                }
                _ => Ok(None),
            },
            Err(e) if is_condition_failure(&e) => Err(StoreError::ConditionFailed),
            Err(e) => Err(sdk_err(e)),
        }
    }

    async fn claim(&self, claim: &Claim<'_>) -> Result<Option<Item>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(claim.pk, claim.sk)))
            .update_expression("SET #slot = :claim, #v = if_not_exists(#v, :zero) + :one")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(#x) OR #x > :now) AND \
                 (attribute_not_exists(#slot) OR #slot.#until <= :now OR #slot.#holder = :holder)",
            )
            .expression_attribute_names("#slot", claim.slot)
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#x", "expires_at")
            .expression_attribute_names("#until", "until")
            .expression_attribute_names("#holder", "holder")
            .expression_attribute_values(":claim", to_attribute(&claim.value()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":now", AttributeValue::N(claim.now.to_string()))
            .expression_attribute_values(":holder", AttributeValue::S(claim.holder.to_owned()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => match out.attributes {
                Some(attrs) if !attrs.is_empty() => Ok(Some(from_attributes(attrs)?)),
                _ => Err(StoreError::Foreign("a claim that returned no item")),
            },
            // Either another holder has the slot or there is no live item: tell them apart.
            Err(e) if is_condition_failure(&e) => match self.get(claim.pk, claim.sk).await? {
                Some(_) => Err(StoreError::ConditionFailed),
                None => Ok(None),
            },
            Err(e) => Err(sdk_err(e)),
        }
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        let now = now_epoch();
        let mut items = Vec::new();
        let mut start: Option<Attributes> = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
                .set_exclusive_start_key(start.take());
            // DynamoDB refuses an empty string as a key condition value.
            request = if sk_prefix.is_empty() {
                request.key_condition_expression("pk = :pk")
            } else {
                request
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", AttributeValue::S(sk_prefix.to_owned()))
            };
            let out = request.send().await.map_err(sdk_err)?;
            for attrs in out.items.unwrap_or_default() {
                let item = from_attributes(attrs)?;
                if !item.is_expired(now) {
                    items.push(item);
                }
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(items)
    }

    async fn write_unconditionally(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        validate_unconditional(&ops)?;
        let requests = ops
            .iter()
            .map(|op| match op {
                WriteOp::Put(item, precondition) => PutRequest::builder()
                    .set_item(Some(to_attributes(item, next_version(item, *precondition))))
                    .build()
                    .map(|put| WriteRequest::builder().put_request(put).build()),
                WriteOp::Delete { pk, sk, .. } => DeleteRequest::builder()
                    .set_key(Some(Self::key(pk, sk)))
                    .build()
                    .map(|delete| WriteRequest::builder().delete_request(delete).build()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::backend)?;
        for chunk in requests.chunks(BATCH_WRITE_MAX) {
            let mut pending = chunk.to_vec();
            let mut attempt = 0;
            while !pending.is_empty() {
                attempt += 1;
                if attempt > UNPROCESSED_ATTEMPTS {
                    return Err(StoreError::backend(std::io::Error::other(
                        "DynamoDB kept items of a batch write unprocessed",
                    )));
                }
                if attempt > 1 {
                    // Unprocessed items mean the table was throttled: back off a little.
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                }
                let answer = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(sdk_err)?;
                pending = answer
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.table))
                    .unwrap_or_default();
            }
        }
        Ok(())
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        validate_transaction(&ops)?;
        let now = now_epoch();
        let mut request = self.client.transact_write_items();
        for op in &ops {
            let entry = match op {
                WriteOp::Put(item, precondition) => {
                    let cond = condition(*precondition, now);
                    let put = Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(to_attributes(item, next_version(item, *precondition))))
                        .set_condition_expression(cond.expression)
                        .set_expression_attribute_names(
                            (!cond.names.is_empty()).then_some(cond.names),
                        )
                        .set_expression_attribute_values(
                            (!cond.values.is_empty()).then_some(cond.values),
                        )
                        .build()
                        .map_err(StoreError::backend)?;
                    TransactWriteItem::builder().put(put).build()
                }
                WriteOp::Delete {
                    pk,
                    sk,
                    precondition,
                } => {
                    let cond = condition(*precondition, now);
                    let delete = Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(Self::key(pk, sk)))
                        .set_condition_expression(cond.expression)
                        .set_expression_attribute_names(
                            (!cond.names.is_empty()).then_some(cond.names),
                        )
                        .set_expression_attribute_values(
                            (!cond.values.is_empty()).then_some(cond.values),
                        )
                        .build()
                        .map_err(StoreError::backend)?;
                    TransactWriteItem::builder().delete(delete).build()
                }
            };
            request = request.transact_items(entry);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let cancelled_by_condition = e
                    .as_service_error()
                    .and_then(|s| match s {
                        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
                        _ => None,
                    })
                    .is_some_and(|c| {
                        // A transaction of another writer on the same items at that moment
                        // (TransactionConflict) is a lost race too: the caller reads again.
                        c.cancellation_reasons().iter().any(|r| {
                            matches!(r.code(), Some("ConditionalCheckFailed" | "TransactionConflict"))
                        })
                    });
                if cancelled_by_condition {
                    Err(StoreError::ConditionFailed)
                } else {
                    Err(sdk_err(e))
                }
            }
        }
    }
}
