//! The declared `AWS::DynamoDB::Table`: keys, indexes, TTL, recovery and encryption.

use std::collections::BTreeMap;

use serde_json::Value;

use super::declared::properties;
use super::intrinsics::{invalid, scalar_bool, scalar_string, Evaluator, TemplateError};

/// `AWS::DynamoDB::Table` properties the local stack reads; any other is an error, so the
/// template cannot grow a table feature the local stack silently lacks.
const TABLE_PROPERTIES: &[&str] = &[
    "AttributeDefinitions",
    "BillingMode",
    "GlobalSecondaryIndexes",
    "KeySchema",
    "PointInTimeRecoverySpecification",
    "SSESpecification",
    "TableName",
    "TimeToLiveSpecification",
];

/// A key attribute: name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAttribute {
    /// Attribute name.
    pub name: String,
    /// `HASH` (partition key) or `RANGE` (sort key).
    pub key_type: String,
}

/// One global secondary index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredIndex {
    /// The index name.
    pub name: String,
    /// Its key schema.
    pub key_schema: Vec<KeyAttribute>,
    /// `ALL`, `KEYS_ONLY` or `INCLUDE`.
    pub projection_type: String,
}

/// The `AWS::DynamoDB::Table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredTable {
    /// The logical id in the template.
    pub logical_id: String,
    /// The table name.
    pub name: String,
    /// `PAY_PER_REQUEST` or `PROVISIONED`.
    pub billing_mode: String,
    /// Types (`S`, `N`, `B`) of the key attributes, by name.
    pub attribute_types: BTreeMap<String, String>,
    /// The primary key.
    pub key_schema: Vec<KeyAttribute>,
    /// The global secondary indexes.
    pub global_secondary_indexes: Vec<DeclaredIndex>,
    /// The TTL attribute, when TTL is enabled.
    pub ttl_attribute: Option<String>,
    /// Point-in-time recovery on.
    pub point_in_time_recovery: bool,
    /// Encryption at rest on.
    pub sse: bool,
}

pub(crate) fn declared_table(
    id: &str,
    resource: &Value,
    eval: &Evaluator<'_>,
) -> Result<DeclaredTable, TemplateError> {
    let raw = properties(id, resource)?;
    if let Some(other) = raw.keys().find(|k| !TABLE_PROPERTIES.contains(&k.as_str())) {
        return Err(invalid(
            &format!("{id}.Properties.{other}"),
            "property is not supported locally",
        ));
    }
    let path = format!("{id}.Properties");
    let props = eval.eval_present(&Value::Object(raw.clone()), &path)?;
    let text = |p: &str| -> Result<Option<String>, TemplateError> {
        props
            .pointer(p)
            .map(|v| scalar_string(v, &format!("{path}{p}")))
            .transpose()
    };
    let name =
        text("/TableName")?.ok_or_else(|| TemplateError::Missing(format!("TableName of {id}")))?;
    let attribute_types = props
        .get("AttributeDefinitions")
        .and_then(Value::as_array)
        .ok_or_else(|| TemplateError::Missing(format!("AttributeDefinitions of {id}")))?
        .iter()
        .map(|a| match (a.get("AttributeName"), a.get("AttributeType")) {
            (Some(n), Some(t)) => Ok((scalar_string(n, &path)?, scalar_string(t, &path)?)),
            _ => Err(invalid(
                &path,
                "an attribute definition needs AttributeName and AttributeType",
            )),
        })
        .collect::<Result<_, _>>()?;
    let mut global_secondary_indexes = Vec::new();
    for index in props
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let index_name = index
            .get("IndexName")
            .map(|n| scalar_string(n, &path))
            .transpose()?;
        global_secondary_indexes.push(DeclaredIndex {
            name: index_name.ok_or_else(|| invalid(&path, "an index needs IndexName"))?,
            key_schema: key_schema(index.get("KeySchema"), &path)?,
            projection_type: index
                .pointer("/Projection/ProjectionType")
                .map(|p| scalar_string(p, &path))
                .transpose()?
                .unwrap_or_else(|| "KEYS_ONLY".to_owned()),
        });
    }
    let enabled = |p: &str| -> Result<bool, TemplateError> {
        props
            .pointer(p)
            .map(|v| scalar_bool(v, &format!("{path}{p}")))
            .transpose()
            .map(|b| b.unwrap_or(false))
    };
    let ttl_attribute = if enabled("/TimeToLiveSpecification/Enabled")? {
        text("/TimeToLiveSpecification/AttributeName")?
    } else {
        None
    };
    Ok(DeclaredTable {
        logical_id: id.to_owned(),
        name,
        billing_mode: text("/BillingMode")?.unwrap_or_else(|| "PROVISIONED".to_owned()),
        attribute_types,
        key_schema: key_schema(props.get("KeySchema"), &path)?,
        global_secondary_indexes,
        ttl_attribute,
        point_in_time_recovery: enabled(
            "/PointInTimeRecoverySpecification/PointInTimeRecoveryEnabled",
        )?,
        sse: enabled("/SSESpecification/SSEEnabled")?,
    })
}

fn key_schema(value: Option<&Value>, path: &str) -> Result<Vec<KeyAttribute>, TemplateError> {
    let items = value
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(path, "KeySchema is a list"))?;
    items
        .iter()
        .map(|k| match (k.get("AttributeName"), k.get("KeyType")) {
            (Some(n), Some(t)) => Ok(KeyAttribute {
                name: scalar_string(n, path)?,
                key_type: scalar_string(t, path)?,
            }),
            _ => Err(invalid(path, "a key needs AttributeName and KeyType")),
        })
        .collect()
}
