//! `cairn`: the command-line tool for cairn's durable workflows — start, list, show, signal,
//! cancel and redrive runs, and draw a run's timeline. Wiring only: parsing is in [`args`],
//! each command group in its own module, errors and exit codes in [`failure`], stdout in
//! [`out`].

// Output goes through `out::outln!`, which ends quietly when the reader closes the pipe.
#![warn(clippy::print_stdout)]

mod args;
mod context;
mod control;
mod dlq;
mod failure;
mod out;
mod queues;
mod runs;
mod scaffold;
mod since;

use std::process::ExitCode;

use clap::Parser as _;

use crate::args::{Cli, Command, ScaffoldCommand};
use crate::context::Ctx;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                failure::code::USAGE
            } else {
                0
            });
        }
    };
    // Scaffolding edits files only: no deployment to find.
    if let Command::Scaffold(ScaffoldCommand::Step(args)) = &cli.command {
        return match scaffold::step(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => report(&e, &failure::Target::default()),
        };
    }
    let config = match context::config(&cli.global) {
        Ok(config) => config,
        Err(e) => return report(&e, &failure::Target::default()),
    };
    let target = context::target(&config, &cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return report(&e.into(), &target),
    };
    runtime.block_on(async {
        let ctx = Ctx::new(&cli.global, config, target).await;
        let result = match cli.command {
            Command::Runs(command) => runs::run(&ctx, command).await,
            Command::Start(args) => control::start(&ctx, args).await,
            Command::Signal(args) => control::signal(&ctx, args).await,
            Command::Cancel(args) => control::cancel(&ctx, args).await,
            Command::Dlq(command) => dlq::run(&ctx, command).await,
            Command::Scaffold(_) => Ok(()),
            Command::Queues => queues::run(&ctx).await,
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => report(&e, &ctx.target),
        }
    })
}

fn report(error: &anyhow::Error, target: &failure::Target) -> ExitCode {
    // The reader of our output has all it wanted (`| head`): not a failure.
    if error.chain().any(|e| e.is::<out::StdoutClosed>()) {
        return ExitCode::SUCCESS;
    }
    let (code, message) = failure::classify(error, target);
    eprintln!("cairn: {message}");
    ExitCode::from(code)
}
