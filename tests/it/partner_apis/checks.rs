//! What a person writing a config sees: channel-check through each example, its trace, a
//! mistake in any key refused naming it, and the docs kept the same as the suite's files.

use super::*;

#[tokio::test]
async fn channel_check_traces_every_exchange_with_secrets_and_signatures_redacted() {
    let (_gateway, served) = Gateway::start(&["tester"], 10_000).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let trace: jifen_adapter::evidence::Trace =
        std::sync::Arc::new(move |exchange: &jifen_mesh::connector::Exchange| {
            sink.lock().unwrap().push(exchange.clone());
        });
    let target = check::Target::http_traced(&served.config, Some(trace)).unwrap();
    check::run_on(target, "tester", 5, "trace-k-")
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    for call in ["balance", "deduct", "refund", "query"] {
        assert!(seen.iter().any(|e| e.call == call), "{call} traced");
    }
    for exchange in seen.iter() {
        assert!(
            !exchange
                .request
                .contains(jifen_tests::partner::gateway::SECRET)
        );
        assert!(
            exchange.request.contains("sign=<redacted>"),
            "{}",
            exchange.request
        );
        assert!(
            exchange.request.starts_with("POST http://"),
            "{}",
            exchange.request
        );
    }
}

/// The key a config error names, or the syntax error's text (which quotes the key).
fn refused_key(path: &std::path::Path, text: &str) -> String {
    match AdapterConfig::parse(path, text) {
        Err(jifen_adapter::AdapterConfigError::Invalid { key, .. }) => key,
        Err(jifen_adapter::AdapterConfigError::Syntax { message, .. }) => message,
        Ok(_) => panic!("accepted: {text}"),
        Err(other) => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_mistake_in_any_new_key_is_refused_at_start_naming_the_key() {
    let (_gateway, gateway) = Gateway::start(&[], 0).await;
    let (_oauth, oauth) = OauthApi::start(&[], 0).await;
    let (_hmac, hmac) = HmacApi::start(&[], 0).await;
    let (_xml, xml) = XmlApi::start(&[], 0).await;
    let text = |served: &Served| std::fs::read_to_string(&served.config).unwrap();
    let cases: Vec<(&Served, &str, &str, &str)> = vec![
        (
            &gateway,
            "algorithm = \"md5\"",
            "algorithm = \"md4\"",
            "md4",
        ),
        (
            &gateway,
            "key = { file = \"gateway-md5.key\" }",
            "key = \"s3cret\"",
            "signing.key",
        ),
        (
            &gateway,
            "key = { file = \"gateway-md5.key\" }",
            "key = { file = \"nope.key\" }",
            "signing.key",
        ),
        (
            &gateway,
            "message = \"{string}&key={secret}\"",
            "message = \"{string}\"",
            "signing.message",
        ),
        (&gateway, "param = \"sign\"", "", "signing"),
        (
            &gateway,
            "timestamp = \"yyyy-MM-dd HH:mm:ss\"",
            "timestamp = \"yyyy-MM-dd hh:mm\"",
            "timestamp",
        ),
        (
            &gateway,
            "utc_offset = \"+08:00\"",
            "utc_offset = \"8\"",
            "utc_offset",
        ),
        (
            &gateway,
            "points_per_unit = 100",
            "points_per_unit = 3",
            "amount",
        ),
        (&gateway, "ok = [\"10000\"]", "", "errors.ok"),
        (
            &gateway,
            "capture = { trade_no = \"/trade_no\" }\n\n[refund]",
            "capture = { Trade = \"/trade_no\" }\n\n[refund]",
            "deduct.capture.Trade",
        ),
        (&gateway, "{deduct.trade_no}", "{deduct.trade_id}", "refund"),
        (
            &gateway,
            "json_params = [\"biz_content\"]\namount",
            "json_params = [\"biz\"]\namount",
            "deduct.json_params",
        ),
        (
            &gateway,
            "[amount]\npoints_per_unit = 100\ndecimals = 2\n",
            "",
            "deduct.amount",
        ),
        (
            &hmac,
            "canonical = \"lines\"\nlines = [\"{method}\"",
            "canonical = \"lines\"\nlinez = [\"{method}\"",
            "linez",
        ),
        (
            &hmac,
            "lines = [\"{header.x-timestamp}\", \"{body}\"]",
            "lines = []",
            "verify.lines",
        ),
        (
            &hmac,
            "header = \"X-Signature\"",
            "header = \"X-Signature\"\nfield = \"/sign\"",
            "verify",
        ),
        (&oauth, "client_id = \"jifen\"\n", "", "auth.client_id"),
        (
            &oauth,
            "poll = \"1s,2s,5s,10s,30s\"",
            "poll = \"1s,2x\"",
            "pending.poll",
        ),
        (
            &oauth,
            "deadline = \"5m\"",
            "deadline = \"1ms\"",
            "pending.deadline",
        ),
        (&oauth, "per_second = 50", "per_second = 0", "rate"),
        (&oauth, "[pending]\npoll", "[pendingz]\npoll", "pendingz"),
        (
            &oauth,
            "key = \"/reference\"\n",
            "key = \"reference\"\n",
            "notify.key",
        ),
        (
            &oauth,
            "points = \"/amount\"\ncapture = { id = \"/id\" }\nreply",
            "capture = { id = \"/id\" }\nreply",
            "notify.points",
        ),
        (
            &oauth,
            "canonical = \"body\"",
            "canonical = \"sorted\"",
            "sorted",
        ),
        (&xml, "answer = \"xml\"", "answer = \"yaml\"", "yaml"),
        (
            &xml,
            "encoding = \"xml\"\nparams = { out_trade_no = \"{key}\", openid",
            "encoding = \"xml\"\nbody = \"{}\"\nparams = { out_trade_no = \"{key}\", openid",
            "deduct.body",
        ),
    ];
    for (served, from, to, key) in cases {
        let good = text(served);
        assert!(good.contains(from), "{from:?} is not in the example");
        AdapterConfig::parse(&served.config, &good).unwrap();
        let refused = refused_key(&served.config, &good.replacen(from, to, 1));
        assert!(refused.contains(key), "{from:?} → {to:?}: {refused}");
    }
    // A token with no [auth] to give it, an amount with no [amount] to make it.
    let gateway_text = text(&gateway);
    let token = gateway_text.replace(
        "[params]\n",
        "[header_templates]\nAuthorization = \"Bearer {token}\"\n\n[params]\n",
    );
    assert!(refused_key(&gateway.config, &token).contains("header_templates"));
}

#[test]
fn the_docs_show_each_example_as_the_suite_runs_it() {
    let docs = include_str!("../../../docs/channels.md");
    for example in [
        jifen_tests::partner::gateway::EXAMPLE,
        jifen_tests::partner::hmac_json::EXAMPLE,
        jifen_tests::partner::oauth::EXAMPLE,
        jifen_tests::partner::xml_api::EXAMPLE,
        jifen_tests::partner::holds::EXAMPLE,
    ] {
        let block = format!("```toml\n{}\n```", example.trim_end());
        assert!(
            docs.contains(&block),
            "docs/channels.md differs from:\n{example}"
        );
    }
}

#[tokio::test]
async fn channel_check_runs_through_each_example_and_names_exactly_what_it_lacks() {
    let lacking = ["null_compensation", "anti_hanging"];
    let (_a, gateway) = Gateway::start(&["tester"], 10_000).await;
    let (_b, hmac) = HmacApi::start(&["tester"], 10_000).await;
    let (_c, oauth) = OauthApi::start(&["tester"], 10_000).await;
    let (_d, xml) = XmlApi::start(&["tester"], 10_000).await;
    for (served, expected) in [
        (&gateway, &lacking[..]),
        (&hmac, &[][..]),
        (&oauth, &lacking[..]),
        (&xml, &lacking[..]),
    ] {
        let target = check::Target::http(&served.config).unwrap();
        let report = check::run_on(target, "tester", 5, "check-k-")
            .await
            .unwrap();
        assert_eq!(report.missing(), expected, "{report:#?}");
        assert_eq!(
            report.balance_after, report.balance_before,
            "all given back"
        );
    }
}

#[tokio::test]
async fn channel_check_runs_the_hold_probes_through_the_hold_example() {
    let (api, served) = jifen_tests::partner::holds::HoldsApi::start(&["tester"], 10_000).await;
    let target = check::Target::http(&served.config).unwrap();
    let holds = check::holds_on(target, "tester", 5, "check-l-")
        .await
        .unwrap()
        .expect("the example declares holds");
    let missing: Vec<_> = holds
        .iter()
        .filter(|f| !f.holds)
        .map(|f| f.guarantee)
        .collect();
    // A void names the hold's id: one never placed cannot be voided, nor a late hold refused.
    assert_eq!(missing, ["null_cancel", "hold_anti_hanging"], "{holds:#?}");
    // The late hold the partner let through was voided again; only the confirmed one is spent.
    assert_eq!(api.available("tester"), Some(10_000 - 5));
    assert_eq!(api.standing(), 0);
}
