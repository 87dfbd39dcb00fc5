//! The demo workflows.

use std::time::Duration;

use cairn::contract::StepError;
use cairn::workflow::{WorkflowContext, WorkflowError, Workflows};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::steps::{Charge, Email, ReportRequest, CHARGE_CARD, GENERATE_REPORT, SEND_EMAIL};

/// A checkout order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Order id.
    pub order_id: String,
    /// Amount to charge.
    pub amount_cents: u64,
    /// Card token: `tok_declined` is declined, `tok_flaky` fails its first charge attempt.
    pub card: String,
    /// Customer email.
    pub email: String,
    /// Wait for an `approval` signal before charging.
    #[serde(default)]
    pub needs_approval: bool,
    /// Cooling-off sleep before the confirmation email, seconds.
    #[serde(default)]
    pub cooling_off_secs: u64,
}

/// The `approval` signal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Approval {
    /// Approved or not.
    pub approved: bool,
    /// Who decided.
    #[serde(default)]
    pub by: String,
}

/// What a completed checkout returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckoutReceipt {
    /// Order id.
    pub order_id: String,
    /// Charge id.
    pub charge_id: String,
    /// Confirmation email id.
    pub email_id: String,
}

/// Checkout: reserve stock, (approval,) charge, (on failure: compensate,) cool off, confirm.
pub async fn checkout(
    ctx: WorkflowContext,
    order: Order,
) -> Result<CheckoutReceipt, WorkflowError> {
    let order_id = order.order_id.clone();
    let reservation: Value = ctx
        .step("inventory.reserve", move || {
            let reservation_id = format!("res_{order_id}");
            async move { Ok::<_, StepError>(json!({ "reservationId": reservation_id })) }
        })
        .await?;
    if order.needs_approval {
        let approval: Approval = ctx.wait_for_signal("approval").await?;
        if !approval.approved {
            release(&ctx, &reservation).await?;
            return Err(WorkflowError::failed(format!(
                "order rejected by {}",
                approval.by
            )));
        }
    }
    let charge = Charge {
        order_id: order.order_id.clone(),
        amount_cents: order.amount_cents,
        card: order.card.clone(),
    };
    let receipt = match ctx.remote(&CHARGE_CARD, charge).await {
        Ok(receipt) => receipt,
        Err(error) => {
            // Compensation: ordinary durable steps after catching the failure.
            release(&ctx, &reservation).await?;
            let email = Email {
                to: order.email.clone(),
                subject: format!("Payment for {} failed", order.order_id),
            };
            ctx.remote(&SEND_EMAIL, email).await?;
            return Err(WorkflowError::failed(format!(
                "charge failed, reservation released: {error}"
            )));
        }
    };
    if order.cooling_off_secs > 0 {
        ctx.sleep(Duration::from_secs(order.cooling_off_secs))
            .await?;
    }
    let email = Email {
        to: order.email.clone(),
        subject: format!("Order {} confirmed", order.order_id),
    };
    let sent = ctx.remote(&SEND_EMAIL, email).await?;
    Ok(CheckoutReceipt {
        order_id: order.order_id,
        charge_id: receipt.charge_id,
        email_id: sent.message_id,
    })
}

async fn release(ctx: &WorkflowContext, reservation: &Value) -> Result<Value, WorkflowError> {
    let reservation = reservation.clone();
    ctx.step("inventory.release", move || {
        let released = reservation.clone();
        async move { Ok::<_, StepError>(json!({ "released": released })) }
    })
    .await
}

/// Fan-out: `n` emails dispatched in one activation, awaited together.
pub async fn fan_out(ctx: WorkflowContext, n: usize) -> Result<usize, WorkflowError> {
    let calls: Vec<_> = (0..n)
        .map(|i| {
            ctx.remote(
                &SEND_EMAIL,
                Email {
                    to: format!("user{i}@example.com"),
                    subject: "news".into(),
                },
            )
        })
        .collect();
    let sent = futures::future::join_all(calls).await;
    let mut ok = 0;
    for result in sent {
        result?;
        ok += 1;
    }
    Ok(ok)
}

/// A durable timer of `seconds` (longer than the SQS delay chunk: chained).
pub async fn timer(ctx: WorkflowContext, seconds: u64) -> Result<Value, WorkflowError> {
    let before = ctx.now();
    ctx.sleep(Duration::from_secs(seconds)).await?;
    let after = ctx.now();
    Ok(json!({ "sleptMs": after.saturating_sub(before) }))
}

/// The seed's long-running report, as a durable step.
pub async fn report(ctx: WorkflowContext, request: ReportRequest) -> Result<Value, WorkflowError> {
    let report = ctx.remote(&GENERATE_REPORT, request).await?;
    Ok(json!(report))
}

/// Every demo workflow, by name.
pub fn workflows() -> Workflows {
    let mut workflows = Workflows::new();
    workflows
        .register("checkout", checkout)
        .register("fan-out", fan_out)
        .register("timer", timer)
        .register("report", report);
    workflows
}
