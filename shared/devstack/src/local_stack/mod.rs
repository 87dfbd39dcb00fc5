//! The local stack's queues and table, created from `template.yaml`: one source of truth.
//!
//! The SAM template deploys cairn to AWS; the local stack (moto) gets the same resources by
//! reading that template instead of keeping a second list, so the two cannot drift:
//!
//! - [`TemplateResources::from_template`] lists what the template declares (queue names and
//!   attributes, redrive policies, the consuming functions, the table's keys, indexes and TTL)
//!   for one set of [`TemplateParams`], without calling AWS;
//! - [`provision_from_template`] creates those queues (dead-letter queues first) and the table,
//!   idempotently, and returns their URLs and names as [`StackResources`].
//!
//! Only the intrinsics the template uses for names and properties are resolved (`Ref` to
//! parameters, `Fn::Sub`, `Fn::If` and its conditions, `Fn::GetAtt <Queue>.Arn` in a redrive
//! policy); anything else in a queue or table is a [`TemplateError`], never silently skipped.

use std::collections::BTreeMap;

use serde_json::Value;

mod declared;
mod intrinsics;
mod provision;
mod table;

pub use declared::{
    Consumer, DeclaredQueue, QueueRole, Redrive, TemplateResources, GROUP_TAG, ROLE_TAG,
};
pub use intrinsics::TemplateError;
pub use provision::{provision_from_template, ProvisionError, StackResources};
pub use table::{DeclaredIndex, DeclaredTable, KeyAttribute};

use intrinsics::scalar_string;

/// The repository's `template.yaml`, embedded at build time.
pub const TEMPLATE_YAML: &str = include_str!("../../../../template.yaml");

/// Pseudo parameters as the local stack sees them (moto's default account).
const PSEUDO_PARAMETERS: &[(&str, &str)] = &[
    ("AWS::AccountId", "123456789012"),
    ("AWS::Partition", "aws"),
    ("AWS::Region", "us-east-1"),
    ("AWS::StackName", "cairn-local"),
    ("AWS::URLSuffix", "amazonaws.com"),
];

/// Values for the template's parameters. [`Default`] matches the template's defaults (a test
/// checks it); parameters without a field here keep their template default unless set in
/// [`TemplateParams::overrides`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateParams {
    /// `Prefix`: queue and table name prefix.
    pub prefix: String,
    /// `Fifo`: FIFO queues.
    pub fifo: bool,
    /// `MaxReceiveCount`: receives before a message moves to its dead-letter queue.
    pub max_receive_count: u32,
    /// `RetentionDays`: days a finished run is kept.
    pub retention_days: u32,
    /// Any other parameter by its template name (e.g. `"BatchSize" → "5"`).
    pub overrides: BTreeMap<String, String>,
}

impl Default for TemplateParams {
    fn default() -> Self {
        Self {
            prefix: cairn::queue_name::DEFAULT_PREFIX.to_owned(),
            fifo: false,
            max_receive_count: 10,
            retention_days: 30,
            overrides: BTreeMap::new(),
        }
    }
}

impl TemplateParams {
    /// The defaults with another prefix.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            ..Self::default()
        }
    }

    /// The template's own defaults for the typed fields (no overrides).
    pub fn from_template_defaults(template_yaml: &str) -> Result<Self, TemplateError> {
        let template = intrinsics::parse_template(template_yaml)?;
        let defaults = declared_defaults(&template)?;
        let get = |name: &str| {
            defaults
                .get(name)
                .cloned()
                .ok_or_else(|| TemplateError::Parameter {
                    name: name.to_owned(),
                    reason: "has no Default".to_owned(),
                })
        };
        let number = |name: &str| -> Result<u32, TemplateError> {
            let v = get(name)?;
            v.parse()
                .map_err(|_| param_error(name, format!("default {v} is not a number")))
        };
        Ok(Self {
            prefix: get("Prefix")?,
            fifo: get("Fifo")? == "true",
            max_receive_count: number("MaxReceiveCount")?,
            retention_days: number("RetentionDays")?,
            overrides: BTreeMap::new(),
        })
    }

    /// Every parameter's value as CloudFormation passes it (a string), pseudo parameters
    /// included, checked against the template's `AllowedValues`, `MinValue` and `MaxValue`.
    fn values(&self, template: &Value) -> Result<BTreeMap<String, String>, TemplateError> {
        let declared = template.get("Parameters").and_then(Value::as_object);
        let mut values = declared_defaults(template)?;
        let typed = [
            ("Prefix", self.prefix.clone()),
            ("Fifo", self.fifo.to_string()),
            ("MaxReceiveCount", self.max_receive_count.to_string()),
            ("RetentionDays", self.retention_days.to_string()),
        ];
        let given = typed
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v))
            .chain(self.overrides.clone());
        for (name, value) in given {
            if !declared.is_some_and(|d| d.contains_key(&name)) {
                return Err(param_error(&name, "is not declared by the template"));
            }
            values.insert(name, value);
        }
        for (name, spec) in declared.into_iter().flatten() {
            let value = values
                .get(name)
                .ok_or_else(|| param_error(name, "has no value and no Default"))?;
            check_constraints(name, value, spec)?;
        }
        for (name, value) in PSEUDO_PARAMETERS {
            values.insert((*name).to_owned(), (*value).to_owned());
        }
        Ok(values)
    }
}

fn param_error(name: &str, reason: impl Into<String>) -> TemplateError {
    TemplateError::Parameter {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

fn declared_defaults(template: &Value) -> Result<BTreeMap<String, String>, TemplateError> {
    let mut out = BTreeMap::new();
    for (name, spec) in template
        .get("Parameters")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(default) = spec.get("Default") {
            out.insert(
                name.clone(),
                scalar_string(default, &format!("Parameters.{name}.Default"))?,
            );
        }
    }
    Ok(out)
}

fn check_constraints(name: &str, value: &str, spec: &Value) -> Result<(), TemplateError> {
    if let Some(allowed) = spec.get("AllowedValues").and_then(Value::as_array) {
        let path = format!("Parameters.{name}.AllowedValues");
        let allowed: Vec<String> = allowed
            .iter()
            .map(|v| scalar_string(v, &path))
            .collect::<Result<_, _>>()?;
        if !allowed.iter().any(|a| a == value) {
            return Err(param_error(
                name,
                format!("{value} is not one of {allowed:?}"),
            ));
        }
    }
    let bound = |key: &str| {
        spec.get(key)
            .and_then(|v| scalar_string(v, key).ok()?.parse::<f64>().ok())
    };
    if bound("MinValue").is_some() || bound("MaxValue").is_some() {
        let n: f64 = value
            .parse()
            .map_err(|_| param_error(name, format!("{value} is not a number")))?;
        if bound("MinValue").is_some_and(|min| n < min)
            || bound("MaxValue").is_some_and(|max| n > max)
        {
            return Err(param_error(
                name,
                format!("{value} is outside MinValue..MaxValue"),
            ));
        }
    }
    if let Some(max) = spec
        .get("MaxLength")
        .and_then(|v| scalar_string(v, "MaxLength").ok()?.parse::<usize>().ok())
    {
        if value.len() > max {
            return Err(param_error(
                name,
                format!("is longer than {max} characters"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
