//! The demo's remote steps: declared once, used by the workflows and served by the worker.

use std::time::Duration;

use cairn::contract::StepError;
use cairn::worker::{TaskContext, Worker};
use cairn::workflow::{RemoteStep, RetryPolicy};
use serde::{Deserialize, Serialize};

/// Charge a card.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Charge {
    /// The order.
    pub order_id: String,
    /// Amount.
    pub amount_cents: u64,
    /// Card token: `tok_declined` is declined, `tok_flaky` fails its first attempt.
    pub card: String,
}

/// A successful charge.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeReceipt {
    /// Provider charge id (derived from the step id: idempotent).
    pub charge_id: String,
}

/// An email to send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Email {
    /// Recipient.
    pub to: String,
    /// Subject line.
    pub subject: String,
}

/// A sent email.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailSent {
    /// Provider message id.
    pub message_id: String,
}

/// The seed's report request (a long-running job, simulated).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRequest {
    /// Whose report.
    pub user_id: u64,
    /// Range start (ISO 8601).
    pub start_date: String,
    /// Range end (ISO 8601).
    pub end_date: String,
    /// How long generating takes, ms (the seed's 10–20 s, shortened for the demo).
    #[serde(default)]
    pub simulated_ms: u64,
}

/// A generated report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Where it is.
    pub report_url: String,
}

/// `payments.charge-card`: retried 3 times with exponential backoff; declines are terminal.
pub const CHARGE_CARD: RemoteStep<Charge, ChargeReceipt> = RemoteStep::new("payments.charge-card")
    .with_retry(RetryPolicy::exponential(
        3,
        Duration::from_millis(500),
        2.0,
        Duration::from_secs(10),
    ))
    .with_timeout(Duration::from_secs(30));

/// `notifications.send-email`.
pub const SEND_EMAIL: RemoteStep<Email, EmailSent> = RemoteStep::new("notifications.send-email");

/// `reports.generate`: long-running; generous timeout.
pub const GENERATE_REPORT: RemoteStep<ReportRequest, Report> =
    RemoteStep::new("reports.generate").with_timeout(Duration::from_secs(120));

async fn charge_card(charge: Charge, task: TaskContext) -> Result<ChargeReceipt, StepError> {
    match charge.card.as_str() {
        "tok_declined" => {
            Err(StepError::terminal("card declined by issuer").with_code("card_declined"))
        }
        "tok_flaky" if task.attempt == 1 => {
            Err(StepError::retryable("payment provider timed out").with_code("provider_timeout"))
        }
        // The step id is the idempotency key: a redelivered task charges once.
        _ => Ok(ChargeReceipt {
            charge_id: format!("ch_{}", task.step_id.replace(':', "_")),
        }),
    }
}

async fn send_email(email: Email, task: TaskContext) -> Result<EmailSent, StepError> {
    tracing::info!(parent: &task.span, to = %email.to, subject = %email.subject, "email sent");
    Ok(EmailSent {
        message_id: format!("msg_{}", task.step_id.replace(':', "_")),
    })
}

async fn generate_report(request: ReportRequest, task: TaskContext) -> Result<Report, StepError> {
    tokio::time::sleep(Duration::from_millis(request.simulated_ms.min(20_000))).await;
    Ok(Report {
        report_url: format!(
            "s3://reports/{}/{}.pdf",
            request.user_id,
            task.step_id.replace(':', "_")
        ),
    })
}

/// A worker serving every demo step (each Lambda function maps one tasks queue to it).
pub fn worker() -> Worker {
    Worker::new()
        .handle(&CHARGE_CARD, charge_card)
        .handle(&SEND_EMAIL, send_email)
        .handle(&GENERATE_REPORT, generate_report)
}
