//! # Retries and compensation
//!
//! A step's [`RetryPolicy`] retries retryable errors with backoff (each backoff is a durable
//! timer); a terminal error, or the last failed attempt, reaches the workflow as
//! [`WorkflowError::StepFailed`]. Catch it and undo what was done with ordinary steps (a saga).

use std::time::Duration;

use cairn::contract::StepError;
use cairn::worker::Worker;
use cairn::workflow::{RemoteStep, RetryPolicy, WorkflowContext, WorkflowError, Workflows};
use serde::{Deserialize, Serialize};

/// A trip to book.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trip {
    /// Who travels.
    pub traveller: String,
    /// Hotel to book.
    pub hotel: String,
}

/// Book a flight: retried 5 times, 1 s doubling to at most 30 s.
pub const BOOK_FLIGHT: RemoteStep<String, String> = RemoteStep::new("travel.book-flight")
    .with_retry(RetryPolicy::exponential(
        5,
        Duration::from_secs(1),
        2.0,
        Duration::from_secs(30),
    ));
/// Book a hotel: no retry.
pub const BOOK_HOTEL: RemoteStep<String, String> =
    RemoteStep::new("travel.book-hotel").with_retry(RetryPolicy::fixed(1, Duration::ZERO));
/// Cancel a flight booking (the compensation).
pub const CANCEL_FLIGHT: RemoteStep<String, ()> = RemoteStep::new("travel.cancel-flight");

/// Books a flight then a hotel; if the hotel fails for good, cancels the flight.
pub async fn book_trip(ctx: WorkflowContext, trip: Trip) -> Result<Vec<String>, WorkflowError> {
    let flight = ctx.remote(&BOOK_FLIGHT, trip.traveller.clone()).await?;
    match ctx.remote(&BOOK_HOTEL, trip.hotel).await {
        Ok(hotel) => Ok(vec![flight, hotel]),
        Err(error) => {
            ctx.remote(&CANCEL_FLIGHT, flight).await?;
            Err(WorkflowError::failed(format!(
                "trip not booked, flight cancelled: {error}"
            )))
        }
    }
}

/// The workflows the engine hosts.
pub fn workflows() -> Workflows {
    let mut workflows = Workflows::new();
    workflows.register("book-trip", book_trip);
    workflows
}

/// The handlers: the flight provider fails twice before it answers; "full" hotels refuse.
pub fn worker() -> Worker {
    Worker::new()
        .handle(&BOOK_FLIGHT, |who: String, task| async move {
            if task.attempt < 3 {
                return Err(StepError::retryable("flight provider busy"));
            }
            Ok(format!("FL-{who}"))
        })
        .handle(&BOOK_HOTEL, |hotel: String, _| async move {
            if hotel == "full" {
                return Err(StepError::terminal("no rooms").with_code("sold_out"));
            }
            Ok(format!("HT-{hotel}"))
        })
        .handle(&CANCEL_FLIGHT, |_: String, _| async move { Ok(()) })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use cairn::testing::{TestEnv, TestEnvError};
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn the_flight_is_retried_with_backoff_then_the_hotel_booked() {
        let mut env = TestEnv::new(workflows()).worker(worker());
        let out: Vec<String> = env
            .execute("book-trip", json!({ "traveller": "ada", "hotel": "ritz" }))
            .await
            .unwrap();
        assert_eq!(out, ["FL-ada", "HT-ritz"]);
        assert_eq!(env.calls_to("travel.book-flight").len(), 3);
        // Backoffs of 1 s and 2 s, skipped.
        assert_eq!(env.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test]
    async fn a_sold_out_hotel_cancels_the_flight() {
        let mut env = TestEnv::new(workflows()).worker(worker());
        let err = env
            .execute::<Vec<String>>("book-trip", json!({ "traveller": "ada", "hotel": "full" }))
            .await
            .unwrap_err();
        let TestEnvError::RunFailed { error, .. } = err else {
            panic!("{err}")
        };
        assert!(
            error.message.contains("flight cancelled"),
            "{}",
            error.message
        );
        let cancel = &env.calls_to("travel.cancel-flight")[0];
        assert_eq!(cancel.input::<String>().unwrap(), "FL-ada");
        assert_eq!(
            env.calls_to("travel.book-hotel").len(),
            1,
            "terminal: not retried"
        );
    }
}
