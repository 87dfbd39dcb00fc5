//! The demo: a checkout workflow, a fan-out, a long timer and the seed's report, with the
//! step handlers that serve them. The engine Lambda hosts [`workflows`]; the worker Lambdas
//! run [`worker`].

mod steps;
mod workflows;

pub use steps::{
    worker, Charge, ChargeReceipt, Email, EmailSent, Report, ReportRequest, CHARGE_CARD,
    GENERATE_REPORT, SEND_EMAIL,
};
pub use workflows::{workflows, Approval, CheckoutReceipt, Order};
