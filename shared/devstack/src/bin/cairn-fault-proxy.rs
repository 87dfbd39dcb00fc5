//! `cairn-fault-proxy --upstream URL [--listen ADDR]`: the fault proxy
//! ([`cairn_devstack::fault_proxy`]) standalone, for scripts. Prints
//! `export CAIRN_FAULT_PROXY_URL=http://...` once listening; faults are switched with
//! `curl -X POST "$CAIRN_FAULT_PROXY_URL/__fault?dynamodb=throttle"` (`ok` to stop).

use cairn_devstack::fault_proxy::FaultProxy;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut upstream, mut listen) = (None, "127.0.0.1:0".to_owned());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--upstream" => upstream = args.next(),
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            _ => {
                return Err(format!(
                    "usage: cairn-fault-proxy --upstream URL [--listen ADDR] ({arg}?)"
                )
                .into())
            }
        }
    }
    let upstream = upstream
        .or_else(|| std::env::var("CAIRN_ENDPOINT_URL").ok())
        .ok_or("--upstream URL (or CAIRN_ENDPOINT_URL) is required")?;
    let proxy = FaultProxy::bind(listen.parse()?, &upstream).await?;
    println!("export CAIRN_FAULT_PROXY_URL={}", proxy.endpoint());
    proxy.wait().await;
    Ok(())
}
