//! `cairn scaffold step`: one command adds a step group. The scaffolded template passes the
//! project's validators (sam validate --lint, cfn-lint, checkov with 0 failed), and the
//! local stack creates the new queue and its dead-letter queue from it.

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

use aws_sdk_sqs::types::QueueAttributeName;
use cairn_devstack::local_stack::{provision_from_template, TemplateParams};
use cairn_tests::{local_sdk_config, repo_root, unique_prefix};

#[tokio::test]
async fn a_scaffolded_step_group_validates_and_the_local_stack_creates_its_queue() {
    let dir = std::env::temp_dir().join(format!("cairn-scaffold-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["template.yaml", "Cargo.toml"] {
        std::fs::copy(repo_root().join(file), dir.join(file)).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "scaffold",
            "step",
            "images.resize",
            "--timeout",
            "120",
            "--root",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crate_dir = dir.join("functions/images-resize-worker");
    for file in ["Cargo.toml", "src/lib.rs", "src/main.rs"] {
        assert!(crate_dir.join(file).is_file(), "{file}");
    }
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("\"functions/images-resize-worker\","));
    // A second time: refused, nothing changed.
    let template = std::fs::read_to_string(dir.join("template.yaml")).unwrap();
    let again = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["scaffold", "step", "images.resize", "--root"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert_eq!(
        std::fs::read_to_string(dir.join("template.yaml")).unwrap(),
        template
    );

    let validate = Command::new(repo_root().join("scripts/validate-template"))
        .arg(dir.join("template.yaml"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&validate.stdout);
    assert!(
        validate.status.success() && report.contains("Failed checks: 0"),
        "{report}\n{}",
        String::from_utf8_lossy(&validate.stderr)
    );

    let sdk = local_sdk_config().await;
    let (sqs, dynamo) = (
        aws_sdk_sqs::Client::new(&sdk),
        aws_sdk_dynamodb::Client::new(&sdk),
    );
    let params = TemplateParams {
        prefix: unique_prefix("scaffold"),
        ..TemplateParams::default()
    };
    let resources = provision_from_template(&template, &params, &sqs, &dynamo)
        .await
        .unwrap();
    let url = &resources.task_queue_urls["images.resize"];
    assert!(
        url.ends_with(&format!("/{}-tasks-images_2Eresize", params.prefix)),
        "{url}"
    );
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(attributes[&QueueAttributeName::VisibilityTimeout], "740");
    assert_eq!(
        attributes[&QueueAttributeName::SqsManagedSseEnabled],
        "true"
    );
    assert!(attributes[&QueueAttributeName::RedrivePolicy]
        .contains(&format!("{}-tasks-images_2Eresize-dlq", params.prefix)));
    std::fs::remove_dir_all(&dir).unwrap();
}
