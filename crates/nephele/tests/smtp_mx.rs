//! SMTP delivery to MX records (no `mx_list`), resolved with a loopback DNS
//! server (dnslib) named by `kumo.dns.configure_resolver`.

mod smtp_common;
mod support;

use serde_json::json;
use smtp_common::*;
use support::*;

/// `mx.example.test` is the sink; the better-preference `dead` host has
/// nothing listening; `nullmx.test` accepts no mail; `nomx.test` has only
/// an address (its implicit MX is itself, the sink); `nosuch.test` is not in
/// the zone (NXDOMAIN).
const ZONE: &str = "
example.test. 60 IN MX 20 mx.example.test.
example.test. 60 IN MX 10 dead.example.test.
mx.example.test. 60 IN A 127.0.0.1
dead.example.test. 60 IN A 127.0.0.9
nullmx.test. 60 IN MX 0 .
nomx.test. 60 IN A 127.0.0.1
";

#[test]
fn mx_records_by_preference_implicit_mx_and_final_answers() {
    let ws = Workspace::new("");
    let sink = start_sink(&ws.dir().join("sink"), "127.0.0.1");
    let dns = start_dns(ws.dir(), ZONE);
    let policy = format!(
        r#"
local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = '@DIR@/spool/data' }}
  kumo.define_spool {{ name = 'meta', path = '@DIR@/spool/meta' }}
  kumo.configure_local_logs {{ log_dir = '@DIR@/logs' }}
  kumo.start_http_listener {{ listen = '127.0.0.1:0' }}
  kumo.dns.configure_resolver {{ name_servers = {{ '{dns}' }} }}
end)
kumo.on('get_queue_config', function(domain)
  return kumo.make_queue_config {{ retry_interval = '1 second' }}
end)
kumo.on('get_egress_path_config', function(domain, source, site)
  return kumo.make_egress_path {{ smtp_port = {port}, prohibited_hosts = {{}} }}
end)
{POLICY_AUTH}"#,
        dns = dns.addr,
        port = sink.addr.port(),
    );
    ws.write("policy.lua", &policy);
    let daemon = ws.start();
    for email in [
        "ann@example.test",
        "bob@nullmx.test",
        "cat@nomx.test",
        "dan@nosuch.test",
    ] {
        let reply = inject(
            &daemon,
            &json!({
                "envelope_sender": "news@example.com",
                "recipients": [{"email": email}],
                "content": "Subject: mx\n\nhi\n",
            }),
            &["-u", "scott:tiger"],
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let deliveries = ws.wait_for_records("Delivery", 2);
    let mut delivered: Vec<&str> = deliveries
        .iter()
        .map(|r| r["recipient"].as_str().unwrap())
        .collect();
    delivered.sort();
    assert_eq!(delivered, ["ann@example.test", "cat@nomx.test"]);
    for delivery in &deliveries {
        assert_eq!(delivery["peer_address"], sink.addr.to_string());
    }
    let bounces = ws.wait_for_records("Bounce", 2);
    let bounce_of = |rcpt: &str| {
        bounces
            .iter()
            .find(|b| b["recipient"] == rcpt)
            .unwrap_or_else(|| panic!("no bounce for {rcpt}: {bounces:?}"))
            .clone()
    };
    assert_eq!(bounce_of("bob@nullmx.test")["response"]["code"], 556);
    let nxdomain = bounce_of("dan@nosuch.test");
    assert_eq!(nxdomain["response"]["code"], 550, "{nxdomain}");
    assert!(
        nxdomain["response"]["content"]
            .as_str()
            .unwrap()
            .contains("NXDOMAIN"),
        "{nxdomain}"
    );
    // Final answers are not retried: one attempt each, no TransientFailure.
    assert!(ws.records_of("TransientFailure").is_empty());
}
