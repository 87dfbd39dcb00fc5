//! `cairn scaffold step GROUP`: adds a step group to the project in one command.
//!
//! In `template.yaml`: the tasks queue and its dead-letter queue (named by
//! `cairn::queue_name`, tagged, SSE, visibility from the worker's timeout), the worker's log
//! group, role and function with its SQS event source (`ReportBatchItemFailures`), the group
//! in the engine's and the reconciler's `CAIRN_TASK_QUEUE_URLS` (and the `TaskQueueUrls`
//! output), and an output with the queue URL. Beside it: a worker crate
//! `functions/<group>-worker` with a handler stub and its `TestEnv` test, added to the
//! workspace. Plain text edits: the rest of the template is left as written.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use cairn::queue_name::{group_token, tasks_queue_name, QueueKind};

use crate::args::ScaffoldStepArgs;
use crate::out::outln;

/// The template's longest allowed `Prefix` (its `MaxLength`): names must fit with it.
const MAX_TEMPLATE_PREFIX: usize = 32;
/// Lambda function names: at most 64 characters, `<prefix>-worker-<slug>` included.
const MAX_FUNCTION_NAME: usize = 64;

/// The names one step group gets.
#[derive(Debug)]
struct Names {
    group: String,
    /// `images.resize` → `ImagesResize` (CloudFormation logical ids).
    id: String,
    /// `images.resize` → `images-resize` (function and crate names).
    slug: String,
    /// `images.resize` → `images_2Eresize` (queue names, as `cairn::queue_name` escapes it).
    token: String,
    /// `images.resize` → `IMAGES_RESIZE` (the step constant).
    constant: String,
}

impl Names {
    fn new(group: &str) -> anyhow::Result<Self> {
        if group.is_empty() || group.contains('@') {
            bail!("a step group is a step name like images.resize (partitions, `@`, are added per deployment)");
        }
        if !group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            bail!("step group {group:?}: use ASCII letters, digits, `.`, `-` and `_`");
        }
        let parts: Vec<&str> = group
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|p| !p.is_empty())
            .collect();
        if parts.is_empty() || !parts[0].starts_with(|c: char| c.is_ascii_alphabetic()) {
            bail!("step group {group:?} must start with a letter");
        }
        let id = parts
            .iter()
            .map(|p| {
                let mut chars = p.chars();
                chars.next().map_or(String::new(), |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            })
            .collect();
        let slug = parts.join("-").to_ascii_lowercase();
        let constant = parts.join("_").to_ascii_uppercase();
        let token = group_token(group);
        // Literal names in the template: they must not need the hash shortening for any
        // prefix the template allows, FIFO included.
        let longest = tasks_queue_name(&"p".repeat(MAX_TEMPLATE_PREFIX), group, QueueKind::Fifo)?;
        if !longest.ends_with(&format!("-tasks-{token}.fifo")) {
            bail!("step group {group:?} is too long for a queue name with a {MAX_TEMPLATE_PREFIX}-character prefix; choose a shorter one");
        }
        let function = MAX_TEMPLATE_PREFIX + "-worker-".len() + slug.len();
        if function > MAX_FUNCTION_NAME {
            bail!("step group {group:?} is too long for a Lambda function name ({function} > {MAX_FUNCTION_NAME} characters); choose a shorter one");
        }
        Ok(Self {
            group: group.to_owned(),
            id,
            slug,
            token,
            constant,
        })
    }

    fn crate_dir(&self) -> String {
        format!("functions/{}-worker", self.slug)
    }
}

/// Runs `cairn scaffold step`.
pub fn step(args: &ScaffoldStepArgs) -> anyhow::Result<()> {
    let names = Names::new(&args.group)?;
    let root = match &args.root {
        Some(root) => root.clone(),
        None => find_root()?,
    };
    let template_path = root.join("template.yaml");
    let template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("reading {}", template_path.display()))?;
    let template = add_to_template(&template, &names, args.timeout)?;
    let manifest_path = root.join("Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest = add_member(&manifest, &names.crate_dir())?;
    let dir = root.join(names.crate_dir());
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(dir.join("Cargo.toml"), crate_manifest(&names))?;
    std::fs::write(dir.join("src/lib.rs"), crate_lib(&names))?;
    std::fs::write(dir.join("src/main.rs"), crate_main(&names))?;
    std::fs::write(&template_path, template)?;
    std::fs::write(&manifest_path, manifest)?;
    let queue = format!("<prefix>-tasks-{}", names.token);
    outln!("step group {} added:", names.group)?;
    outln!(
        "  template.yaml  {id}TasksQueue ({queue}), {id}TasksDlq, {id}WorkerRole, {id}WorkerFunction (+ log group, event source), output {id}TasksQueueUrl; engine and reconciler CAIRN_TASK_QUEUE_URLS",
        id = names.id
    )?;
    outln!(
        "  {}/         the worker: the handler stub in src/lib.rs (constant {}), its TestEnv test, main.rs = serve_worker",
        names.crate_dir(),
        names.constant
    )?;
    outln!("next: write the handler, call it from a workflow with ctx.remote(&{}, input), `scripts/validate-template`", names.constant)?;
    Ok(())
}

fn find_root() -> anyhow::Result<PathBuf> {
    let mut dir = std::env::current_dir()?;
    loop {
        if dir.join("template.yaml").is_file() && dir.join("Cargo.toml").is_file() {
            return Ok(dir);
        }
        if !dir.pop() {
            bail!("no template.yaml with a Cargo.toml beside it here or above; pass --root");
        }
    }
}

/// The template with the group's resources, queue maps and output added.
fn add_to_template(template: &str, names: &Names, timeout: u32) -> anyhow::Result<String> {
    let queue_id = format!("{}TasksQueue", names.id);
    if template.contains(&format!("\n  {queue_id}:"))
        || template.contains(&format!("\"{}\":", names.group))
    {
        bail!("step group {} is already in the template", names.group);
    }
    let outputs = template
        .find("\nOutputs:\n")
        .context("template.yaml has no Outputs section")?;
    let mut out = String::with_capacity(template.len() + 8_000);
    out.push_str(template[..outputs].trim_end());
    out.push_str("\n\n");
    out.push_str(&resources(names, timeout));
    out.push_str(&template[outputs..]);
    let mut maps = 0;
    let entry = format!(",\"{}\":\"${{{queue_id}}}\"}}'", names.group);
    let out: String = out
        .lines()
        .map(|line| {
            let is_map = line.trim_end().ends_with("TasksQueue}\"}'")
                && (line.contains("CAIRN_TASK_QUEUE_URLS:") || line.contains("Value: !Sub '{"));
            if is_map {
                maps += 1;
                format!("{}{entry}\n", &line.trim_end()[..line.trim_end().len() - 2])
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    if maps < 2 {
        bail!("template.yaml: expected the engine's and the reconciler's CAIRN_TASK_QUEUE_URLS maps, found {maps}");
    }
    // The new worker is built without claim checks (no DynamoDB client): the engine must
    // refuse oversize tasks for its group instead of sending references it cannot read.
    let peer_groups = "${PeerGroups}\"";
    let var = "CAIRN_GROUPS_WITHOUT_CLAIM_CHECKS: !Sub \"";
    let out = match out.find(peer_groups) {
        Some(at) if out[..at].ends_with(',') && out[..at].contains(var) => {
            format!("{}{},{}", &out[..at], names.group, &out[at..])
        }
        _ => bail!(
            "template.yaml: expected CAIRN_GROUPS_WITHOUT_CLAIM_CHECKS: !Sub \"<groups>,${{PeerGroups}}\""
        ),
    };
    let output = format!(
        "  {queue_id}Url:\n    Description: Tasks queue of the {} group.\n    Value: !Ref {queue_id}\n",
        names.group
    );
    Ok(out + &output)
}

/// Adds `member` to the root manifest's `[workspace] members`.
fn add_member(manifest: &str, member: &str) -> anyhow::Result<String> {
    let start = manifest
        .find("members = [")
        .context("Cargo.toml has no `members = [` list")?;
    let end = start
        + manifest[start..]
            .find("\n]")
            .context("Cargo.toml: the members list does not end with `]` on its own line")?;
    Ok(format!(
        "{}\n    \"{member}\",{}",
        &manifest[..end],
        &manifest[end..]
    ))
}

fn resources(n: &Names, timeout: u32) -> String {
    let (id, group, token, slug) = (&n.id, &n.group, &n.token, &n.slug);
    let visibility = timeout * 6 + 20;
    let sse_skip = r#"      checkov:
        skip:
          - id: CKV_AWS_27
            comment: "Encrypted at rest with SSE-SQS (SqsManagedSseEnabled: true); the check only recognises KmsMasterKeyId. SSE-KMS would add KMS calls and key grants for every producer and consumer.""#;
    format!(
        r#"  # ---------------------------------------------------------------- step group {group} (cairn scaffold step)
  {id}TasksDlq:
    Type: AWS::SQS::Queue
    Metadata:
{sse_skip}
    Properties:
      QueueName: !If [IsFifo, !Sub "${{Prefix}}-tasks-{token}-dlq.fifo", !Sub "${{Prefix}}-tasks-{token}-dlq"]
      FifoQueue: !If [IsFifo, true, !Ref AWS::NoValue]
      MessageRetentionPeriod: 1209600
      SqsManagedSseEnabled: true
      Tags:
        - {{ Key: "cairn:role", Value: dlq }}

  {id}TasksQueue:
    Type: AWS::SQS::Queue
    Metadata:
{sse_skip}
    Properties:
      QueueName: !If [IsFifo, !Sub "${{Prefix}}-tasks-{token}.fifo", !Sub "${{Prefix}}-tasks-{token}"]
      FifoQueue: !If [IsFifo, true, !Ref AWS::NoValue]
      ContentBasedDeduplication: !If [IsFifo, true, !Ref AWS::NoValue]
      DeduplicationScope: !If [IsFifo, messageGroup, !Ref AWS::NoValue]
      FifoThroughputLimit: !If [IsFifo, perMessageGroupId, !Ref AWS::NoValue]
      VisibilityTimeout: {visibility} # worker Timeout {timeout} s x 6 + 20
      MessageRetentionPeriod: 1209600
      SqsManagedSseEnabled: true
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt {id}TasksDlq.Arn
        maxReceiveCount: !Ref MaxReceiveCount
      Tags:
        - {{ Key: "cairn:role", Value: tasks }}
        - {{ Key: "cairn:group", Value: {group} }}

  {id}WorkerLogGroup:
    Type: AWS::Logs::LogGroup
    Metadata:
      checkov:
        skip:
          - id: CKV_AWS_158
            comment: CloudWatch Logs encrypts at rest by default and these logs carry no secrets; a customer managed key adds cost, not protection.
    Properties:
      LogGroupName: !Sub "/aws/lambda/${{Prefix}}-worker-{slug}"
      RetentionInDays: !Ref LogRetentionDays

  {id}WorkerRole:
    Type: AWS::IAM::Role
    Properties:
      Description: "cairn worker-{slug}: receives from its own tasks queue only, answers on the results queue."
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: {{ Service: lambda.amazonaws.com }}
            Action: sts:AssumeRole
      Policies:
        - PolicyName: worker-{slug}
          PolicyDocument:
            Version: "2012-10-17"
            Statement:
              - Sid: OwnLogs
                Effect: Allow
                Action: [logs:CreateLogStream, logs:PutLogEvents]
                Resource: !GetAtt {id}WorkerLogGroup.Arn
              - Sid: Tracing # X-Ray has no resource-level permissions
                Effect: Allow
                Action: [xray:PutTraceSegments, xray:PutTelemetryRecords]
                Resource: "*"
              - Sid: ConsumeOwnTasksQueue
                Effect: Allow
                Action: [sqs:ReceiveMessage, sqs:DeleteMessage, sqs:ChangeMessageVisibility, sqs:GetQueueAttributes]
                Resource: !GetAtt {id}TasksQueue.Arn
              - Sid: AnswerOnResultsQueue
                Effect: Allow
                Action: [sqs:SendMessage, sqs:GetQueueUrl]
                Resource: !GetAtt ResultsQueue.Arn
              - Sid: ClaimCheckBlobsOnly # payloads over the SQS size limit travel as BLOB# items
                Effect: Allow
                Action: [dynamodb:GetItem, dynamodb:PutItem, dynamodb:Query]
                Resource: !GetAtt RunsTable.Arn
                Condition:
                  ForAllValues:StringLike:
                    dynamodb:LeadingKeys: ["BLOB#*"]

  {id}WorkerFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: {slug}-worker
      checkov:
        skip:
          - id: CKV_AWS_116
            comment: Invoked only by its SQS event source, never asynchronously; a failing message is retried by SQS and then moved to the queue's own dead-letter queue (RedrivePolicy).
          - id: CKV_AWS_115
            comment: Concurrency is bounded by the event source's ScalingConfig.MaximumConcurrency; reserved concurrency would carve the account pool (and fails on accounts at the minimum unreserved concurrency).
          - id: CKV_AWS_117
            comment: Talks only to SQS and DynamoDB public endpoints with IAM auth; a VPC adds NAT or endpoint cost and cold-start latency, no isolation.
          - id: CKV_AWS_173
            comment: The environment holds resource names and queue URLs, no secrets; Lambda encrypts it at rest with an AWS managed key.
    Properties:
      CodeUri: functions/{slug}-worker
      FunctionName: !Sub "${{Prefix}}-worker-{slug}"
      Description: cairn step worker for the {group} group.
      Role: !GetAtt {id}WorkerRole.Arn
      Timeout: {timeout}
      LoggingConfig:
        LogGroup: !Ref {id}WorkerLogGroup
        LogFormat: JSON
      Environment:
        Variables:
          CAIRN_TASK_QUEUE_URL: !Ref {id}TasksQueue
      Events:
        Tasks:
          Type: SQS
          Properties:
            Queue: !GetAtt {id}TasksQueue.Arn
            BatchSize: !Ref BatchSize
            MaximumBatchingWindowInSeconds: !If [IsFifo, !Ref AWS::NoValue, !Ref MaximumBatchingWindowInSeconds]
            FunctionResponseTypes: [ReportBatchItemFailures]
            ScalingConfig:
              MaximumConcurrency: !Ref WorkerMaximumConcurrency
"#
    )
}

fn crate_manifest(n: &Names) -> String {
    format!(
        r#"[package]
name = "{slug}-worker"
version = "0.1.0"
description = "Worker Lambda of the {group} step group"
edition.workspace = true
license.workspace = true
publish.workspace = true

[[bin]]
name = "{slug}-worker"
path = "src/main.rs"

[dependencies]
cairn.workspace = true
cairn-lambda.workspace = true
lambda_runtime.workspace = true
tokio.workspace = true
serde_json.workspace = true

[features]
# Claim checks need the DynamoDB client (a bigger Lambda); without them the engine refuses
# tasks over 240 KiB for this group (CAIRN_GROUPS_WITHOUT_CLAIM_CHECKS in template.yaml).
claim-checks = ["cairn-lambda/dynamodb"]

[lints]
workspace = true
"#,
        slug = n.slug,
        group = n.group
    )
}

fn crate_lib(n: &Names) -> String {
    format!(
        r#"//! The `{group}` step group: the step, declared once for the workflows that call it and the
//! worker that serves it (`cairn scaffold step {group}`).

use cairn::contract::StepError;
use cairn::worker::Worker;
use cairn::workflow::RemoteStep;
use serde_json::Value;

/// `{group}`: call it from a workflow with `ctx.remote(&{constant}, input).await?`.
/// Replace `Value` with the step's own input and output types.
pub const {constant}: RemoteStep<Value, Value> = RemoteStep::new("{group}");

/// The handlers of this group's worker Lambda.
pub fn worker() -> Worker {{
    Worker::new().handle(&{constant}, |input: Value, task| async move {{
        // `task.step_id` is the idempotency key for side effects; a retryable error
        // (`StepError::retryable`) is retried per the step's policy, a terminal one is not.
        if input.is_null() {{
            return Err(StepError::terminal("no input").with_code("bad_input"));
        }}
        Ok(serde_json::json!({{ "handled": input, "by": task.step_id.to_string() }}))
    }})
}}

#[cfg(test)]
mod tests {{
    #![allow(clippy::unwrap_used)]
    use cairn::testing::TestEnv;
    use cairn::workflow::{{WorkflowContext, Workflows}};

    use super::*;

    #[tokio::test]
    async fn a_workflow_calls_the_step() {{
        let mut workflows = Workflows::new();
        workflows.register("call", |ctx: WorkflowContext, input: Value| async move {{
            ctx.remote(&{constant}, input).await
        }});
        let mut env = TestEnv::new(workflows).worker(worker());
        let out: Value = env.execute("call", serde_json::json!({{ "n": 1 }})).await.unwrap();
        assert_eq!(out["handled"]["n"], 1);
        assert_eq!(env.calls_to("{group}").len(), 1);
    }}
}}
"#,
        group = n.group,
        constant = n.constant
    )
}

fn crate_main(n: &Names) -> String {
    format!(
        r#"//! The worker Lambda of the `{group}` step group (trigger: its tasks queue). Wiring only.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {{
    cairn_lambda::serve_worker({krate}_worker::worker()).await
}}
"#,
        group = n.group,
        krate = n.slug.replace('-', "_")
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_follow_the_queue_name_rules() {
        let n = Names::new("images.resize").unwrap();
        assert_eq!(
            (
                n.id.as_str(),
                n.slug.as_str(),
                n.token.as_str(),
                n.constant.as_str()
            ),
            (
                "ImagesResize",
                "images-resize",
                "images_2Eresize",
                "IMAGES_RESIZE"
            )
        );
        assert!(Names::new("a@eu").is_err());
        assert!(Names::new("9lives").is_err());
        assert!(
            Names::new(&"x".repeat(40)).is_err(),
            "function name too long"
        );
    }

    #[test]
    fn the_template_gains_the_group_once() {
        let template = include_str!("../../template.yaml");
        let n = Names::new("images.resize").unwrap();
        let out = add_to_template(template, &n, 60).unwrap();
        assert_eq!(
            out.matches(r#","images.resize":"${ImagesResizeTasksQueue}"}'"#)
                .count(),
            3,
            "engine, reconciler and the TaskQueueUrls output"
        );
        assert!(out.contains("VisibilityTimeout: 380 # worker Timeout 60 s x 6 + 20"));
        assert!(
            out.contains(",images.resize,${PeerGroups}\""),
            "the engine refuses oversize tasks for a worker without claim checks"
        );
        assert!(out.contains("FunctionResponseTypes: [ReportBatchItemFailures]"));
        assert!(out.ends_with("    Value: !Ref ImagesResizeTasksQueue\n"));
        let again = add_to_template(&out, &n, 60).unwrap_err();
        assert!(again.to_string().contains("already"), "{again}");
    }

    #[test]
    fn the_member_joins_the_workspace() {
        let manifest = "[workspace]\nmembers = [\n    \"a\",\n]\n";
        assert_eq!(
            add_member(manifest, "functions/x-worker").unwrap(),
            "[workspace]\nmembers = [\n    \"a\",\n    \"functions/x-worker\",\n]\n"
        );
    }
}
