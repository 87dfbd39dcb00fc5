//! Reading a CloudFormation/SAM template: YAML (short-form tags included) to JSON, and the few
//! intrinsic functions the local stack needs to resolve names and properties.
//!
//! Short tags (`!Sub`, `!Ref`, `!GetAtt`, `!If`, ...) are rewritten to their long JSON form
//! (`{"Fn::Sub": ...}`, `{"Ref": ...}`, `{"Fn::GetAtt": [id, attr]}`) first, so the evaluator
//! handles one shape. What it resolves: `Ref` to parameters and pseudo parameters (with
//! `AWS::NoValue` dropping the property), `Fn::Sub`, `Fn::Join`, `Fn::If`, `Fn::Equals`,
//! `Fn::Not`, `Fn::And`, `Fn::Or` and `Condition`. A reference to a resource is an error here:
//! the one place the local stack follows one (a `RedrivePolicy` naming its dead-letter queue)
//! reads it with [`get_att_target`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A template the local stack cannot read or resolve.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// Not valid YAML.
    #[error("template is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    /// A required section, resource or property is missing.
    #[error("template has no {0}")]
    Missing(String),
    /// A value has the wrong shape or an invalid value.
    #[error("template value at {path} is invalid: {reason}")]
    Invalid {
        /// Where, e.g. `Resources.ResultsQueue.Properties.VisibilityTimeout`.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An intrinsic function or property the local stack does not resolve.
    #[error("template construct at {path} is not supported by the local stack: {what}")]
    Unsupported {
        /// Where.
        path: String,
        /// The construct.
        what: String,
    },
    /// A parameter value given by the caller that the template does not declare or accept.
    #[error("template parameter {name}: {reason}")]
    Parameter {
        /// The parameter.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

pub(crate) fn invalid(path: &str, reason: impl Into<String>) -> TemplateError {
    TemplateError::Invalid {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn unsupported(path: &str, what: impl Into<String>) -> TemplateError {
    TemplateError::Unsupported {
        path: path.to_owned(),
        what: what.into(),
    }
}

/// Parses template YAML into JSON, rewriting CloudFormation short tags to their long form.
pub(crate) fn parse_template(yaml: &str) -> Result<Value, TemplateError> {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml)?;
    to_json(doc, "")
}

fn to_json(value: serde_yaml_ng::Value, path: &str) -> Result<Value, TemplateError> {
    use serde_yaml_ng::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64().map(Value::from).unwrap_or(Value::Null)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(|v| to_json(v, path))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(mapping) => {
            let mut out = Map::new();
            for (key, v) in mapping {
                let key = match key {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    other => {
                        return Err(invalid(path, format!("unsupported mapping key {other:?}")))
                    }
                };
                let child = format!("{path}.{key}");
                out.insert(key, to_json(v, child.trim_start_matches('.'))?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = to_json(tagged.value, path)?;
            let (key, inner) = match name {
                "Ref" | "Condition" => (name.to_owned(), inner),
                // `!GetAtt Queue.Arn` is the scalar form of `Fn::GetAtt: [Queue, Arn]`.
                "GetAtt" => match inner {
                    Value::String(s) => {
                        let (id, attr) = s.split_once('.').ok_or_else(|| {
                            invalid(path, format!("!GetAtt {s} is not <LogicalId>.<Attribute>"))
                        })?;
                        ("Fn::GetAtt".to_owned(), Value::from(vec![id, attr]))
                    }
                    other => ("Fn::GetAtt".to_owned(), other),
                },
                _ => (format!("Fn::{name}"), inner),
            };
            let mut out = Map::new();
            out.insert(key, inner);
            Value::Object(out)
        }
    })
}

/// The logical id `X` of a `Fn::GetAtt: [X, <attribute>]`, if `value` is one.
pub(crate) fn get_att_target<'v>(value: &'v Value, attribute: &str) -> Option<&'v str> {
    let args = value
        .as_object()
        .filter(|o| o.len() == 1)?
        .get("Fn::GetAtt")?
        .as_array()?;
    match args.as_slice() {
        [Value::String(id), Value::String(attr)] if attr == attribute => Some(id),
        _ => None,
    }
}

/// Resolves intrinsic functions against parameter values and the template's conditions.
pub(crate) struct Evaluator<'t> {
    /// Parameter and pseudo-parameter values (CloudFormation passes every parameter as a string).
    values: BTreeMap<String, String>,
    /// The template's `Conditions` section.
    conditions: &'t Map<String, Value>,
}

/// How deep conditions may refer to conditions (guards against a cycle).
const MAX_DEPTH: usize = 32;

impl<'t> Evaluator<'t> {
    pub(crate) fn new(
        values: BTreeMap<String, String>,
        conditions: &'t Map<String, Value>,
    ) -> Self {
        Self { values, conditions }
    }

    /// Resolves `value`; `Ok(None)` means the property is absent (`AWS::NoValue`).
    pub(crate) fn eval(&self, value: &Value, path: &str) -> Result<Option<Value>, TemplateError> {
        self.eval_depth(value, path, 0)
    }

    /// Resolves `value`, which must be present.
    pub(crate) fn eval_present(&self, value: &Value, path: &str) -> Result<Value, TemplateError> {
        self.eval(value, path)?
            .ok_or_else(|| invalid(path, "resolves to AWS::NoValue"))
    }

    fn eval_depth(
        &self,
        value: &Value,
        path: &str,
        depth: usize,
    ) -> Result<Option<Value>, TemplateError> {
        if depth > MAX_DEPTH {
            return Err(invalid(path, "conditions nest too deep (a cycle?)"));
        }
        match value {
            Value::Object(map) if map.len() == 1 => {
                let Some((key, arg)) = map.iter().next() else {
                    return Ok(Some(Value::Null));
                };
                if key == "Ref" || key == "Condition" || key.starts_with("Fn::") {
                    return self.intrinsic(key, arg, path, depth);
                }
                self.eval_object(map, path, depth)
            }
            Value::Object(map) => self.eval_object(map, path, depth),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if let Some(v) = self.eval_depth(item, &format!("{path}[{i}]"), depth)? {
                        out.push(v);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            scalar => Ok(Some(scalar.clone())),
        }
    }

    fn eval_object(
        &self,
        map: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<Option<Value>, TemplateError> {
        let mut out = Map::new();
        for (key, v) in map {
            if let Some(v) = self.eval_depth(v, &format!("{path}.{key}"), depth)? {
                out.insert(key.clone(), v);
            }
        }
        Ok(Some(Value::Object(out)))
    }

    fn intrinsic(
        &self,
        function: &str,
        arg: &Value,
        path: &str,
        depth: usize,
    ) -> Result<Option<Value>, TemplateError> {
        let here = format!("{path}.{function}");
        match function {
            "Ref" => {
                let name = arg
                    .as_str()
                    .ok_or_else(|| invalid(&here, "Ref takes a name"))?;
                if name == "AWS::NoValue" {
                    return Ok(None);
                }
                match self.values.get(name) {
                    Some(v) => Ok(Some(Value::String(v.clone()))),
                    None => Err(unsupported(
                        &here,
                        format!("Ref {name} (a resource, or unknown)"),
                    )),
                }
            }
            "Fn::Sub" => self.sub(arg, &here, depth).map(|s| Some(Value::String(s))),
            "Fn::Join" => {
                let [sep, Value::Array(parts)] = args::<2>(arg, &here)? else {
                    return Err(invalid(&here, "Fn::Join takes [separator, [values]]"));
                };
                let sep = sep
                    .as_str()
                    .ok_or_else(|| invalid(&here, "separator is a string"))?;
                let mut out = Vec::new();
                for (i, part) in parts.iter().enumerate() {
                    let p = format!("{here}[{i}]");
                    if let Some(v) = self.eval_depth(part, &p, depth)? {
                        out.push(scalar_string(&v, &p)?);
                    }
                }
                Ok(Some(Value::String(out.join(sep))))
            }
            "Fn::If" => {
                let [cond, then, otherwise] = args::<3>(arg, &here)?;
                let cond = cond
                    .as_str()
                    .ok_or_else(|| invalid(&here, "condition name"))?;
                let branch = if self.condition(cond, &here, depth + 1)? {
                    then
                } else {
                    otherwise
                };
                self.eval_depth(branch, &here, depth)
            }
            "Condition" => {
                let name = arg
                    .as_str()
                    .ok_or_else(|| invalid(&here, "condition name"))?;
                self.condition(name, &here, depth + 1)
                    .map(|b| Some(Value::Bool(b)))
            }
            "Fn::Equals" => {
                let [a, b] = args::<2>(arg, &here)?;
                let a = self
                    .eval_depth(a, &here, depth)?
                    .map(|v| scalar_string(&v, &here));
                let b = self
                    .eval_depth(b, &here, depth)?
                    .map(|v| scalar_string(&v, &here));
                Ok(Some(Value::Bool(a.transpose()? == b.transpose()?)))
            }
            "Fn::Not" | "Fn::And" | "Fn::Or" => {
                let items = arg
                    .as_array()
                    .ok_or_else(|| invalid(&here, "takes a list"))?;
                let mut values = Vec::with_capacity(items.len());
                for item in items {
                    values.push(self.truth(item, &here, depth)?);
                }
                Ok(Some(Value::Bool(match function {
                    "Fn::Not" => match values.as_slice() {
                        [v] => !v,
                        _ => return Err(invalid(&here, "Fn::Not takes one condition")),
                    },
                    "Fn::And" => values.iter().all(|v| *v),
                    _ => values.iter().any(|v| *v),
                })))
            }
            other => Err(unsupported(&here, other.to_owned())),
        }
    }

    fn truth(&self, value: &Value, path: &str, depth: usize) -> Result<bool, TemplateError> {
        match self.eval_depth(value, path, depth + 1)? {
            Some(Value::Bool(b)) => Ok(b),
            other => Err(invalid(
                path,
                format!("expected a condition, got {other:?}"),
            )),
        }
    }

    /// Evaluates the named entry of `Conditions`.
    pub(crate) fn condition(
        &self,
        name: &str,
        path: &str,
        depth: usize,
    ) -> Result<bool, TemplateError> {
        let def = self
            .conditions
            .get(name)
            .ok_or_else(|| invalid(path, format!("no condition named {name}")))?;
        self.truth(def, &format!("Conditions.{name}"), depth)
    }

    fn sub(&self, arg: &Value, path: &str, depth: usize) -> Result<String, TemplateError> {
        let (text, vars) = match arg {
            Value::String(s) => (s.as_str(), None),
            Value::Array(items) => match items.as_slice() {
                [Value::String(s), Value::Object(vars)] => (s.as_str(), Some(vars)),
                _ => return Err(invalid(path, "Fn::Sub takes a string or [string, {vars}]")),
            },
            _ => return Err(invalid(path, "Fn::Sub takes a string or [string, {vars}]")),
        };
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| invalid(path, "unclosed ${ in Fn::Sub"))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                // `${!Literal}` writes `${Literal}` verbatim.
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.and_then(|vars| vars.get(name)) {
                let v = self.eval_depth(v, path, depth)?.unwrap_or(Value::Null);
                out.push_str(&scalar_string(&v, path)?);
            } else if let Some(v) = self.values.get(name) {
                out.push_str(v);
            } else {
                return Err(unsupported(
                    path,
                    format!("${{{name}}} (a resource, or unknown)"),
                ));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn args<'v, const N: usize>(arg: &'v Value, path: &str) -> Result<[&'v Value; N], TemplateError> {
    let items = arg
        .as_array()
        .ok_or_else(|| invalid(path, "takes a list"))?;
    let refs: Vec<&'v Value> = items.iter().collect();
    refs.try_into()
        .map_err(|_| invalid(path, format!("takes {N} arguments")))
}

/// A resolved scalar as CloudFormation sees it: a string (numbers and booleans included).
pub(crate) fn scalar_string(value: &Value, path: &str) -> Result<String, TemplateError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(invalid(path, format!("expected a scalar, got {other}"))),
    }
}

/// A resolved scalar as a non-negative integer (`30` and `"30"` alike).
pub(crate) fn scalar_u32(value: &Value, path: &str) -> Result<u32, TemplateError> {
    let s = scalar_string(value, path)?;
    s.trim()
        .parse()
        .map_err(|_| invalid(path, format!("expected a non-negative integer, got {s}")))
}

/// A resolved scalar as a boolean (`true` and `"true"` alike).
pub(crate) fn scalar_bool(value: &Value, path: &str) -> Result<bool, TemplateError> {
    match scalar_string(value, path)?.as_str() {
        "true" | "True" => Ok(true),
        "false" | "False" => Ok(false),
        other => Err(invalid(
            path,
            format!("expected true or false, got {other}"),
        )),
    }
}
