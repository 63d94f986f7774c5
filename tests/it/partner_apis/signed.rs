//! APIs that sign: an MD5 form gateway reversed by its own trade_no, an HMAC JSON API that
//! signs its answers, an XML gateway — orders through faults, forged or stale signatures.

use super::*;

#[tokio::test]
async fn a_signed_form_gateway_refunds_by_its_own_trade_no_through_faults() {
    let (gateway, served) = Gateway::start(&EVERYONE, START_POINTS).await;
    arm(&gateway.book.faults);
    for order in orders_through("gamma", &served, &gateway.book).await {
        let line = order
            .lines
            .iter()
            .find(|l| l.channel_id == "gamma")
            .unwrap();
        let trade_no = line.captured.get("trade_no").expect("the trade_no is kept");
        let trade = gateway.book.query_by_trade_no(trade_no).unwrap();
        assert_eq!(trade.state, TradeState::Done);
        assert_eq!(trade.points, line.points, "1.25 yuan is 125 points");
    }
}

#[tokio::test]
async fn an_hmac_signed_api_with_signed_answers_runs_through_faults_and_forgeries() {
    let (api, served) = HmacApi::start(&EVERYONE, START_POINTS).await;
    arm(&api.book.faults);
    api.bad_signature.store(3, Ordering::SeqCst);
    orders_through("epsilon", &served, &api.book).await;
    assert_eq!(
        api.bad_signature.load(Ordering::SeqCst),
        0,
        "forged answers were met"
    );
}

#[tokio::test]
async fn an_answer_whose_signature_fails_settles_nothing() {
    let (api, served) = HmacApi::start(&["u1"], 1_000).await;
    let channel = HttpChannel::new(AdapterConfig::load(&served.config).unwrap()).unwrap();
    api.bad_signature.store(1, Ordering::SeqCst);
    let forged = channel.deduct(key("o-1", "u1", 250)).await.unwrap_err();
    assert_eq!(forged.code(), Code::Unknown, "{forged:?}");
    assert!(forged.message().contains("signature"), "{forged:?}");
    // Asked again, signed afresh (the partner refuses a nonce it has seen): the truth.
    let asked = channel.query(key("o-1", "u1", 250)).await.unwrap();
    assert_eq!(asked.state, jifen_mesh::barrier::LedgerState::Deducted);
    assert_eq!(asked.points, 250);
    let again = channel.deduct(key("o-1", "u1", 250)).await.unwrap();
    assert_eq!(again.points, 250, "the same request_id, deducted once");
    assert_eq!(api.book.points_of("u1"), Some(750));
}

#[tokio::test]
async fn a_refund_whose_deduct_answer_was_lost_learns_the_trade_no_from_the_query() {
    let (gateway, served) = Gateway::start(&["u1"], 1_000).await;
    let channel = HttpChannel::new(AdapterConfig::load(&served.config).unwrap()).unwrap();
    gateway.book.faults.lose_answer.store(1, Ordering::SeqCst);
    let lost = channel.deduct(key("o-lost", "u1", 250)).await.unwrap_err();
    assert_eq!(lost.code(), Code::Unknown, "{lost:?}");
    assert_eq!(gateway.book.points_of("u1"), Some(750), "it was applied");
    // The refund carries no trade_no: the query by our order number gives it.
    let refunded = channel.refund(key("o-lost", "u1", 250)).await.unwrap();
    assert_eq!(refunded.state, jifen_mesh::barrier::LedgerState::Refunded);
    assert_eq!(gateway.book.points_of("u1"), Some(1_000));
    // A refund of an order the gateway never saw gives nothing back, and says so.
    let never = channel.refund(key("o-never", "u1", 100)).await.unwrap_err();
    assert_eq!(never.code(), Code::NotFound, "{never:?}");
    // An order number is 32 characters there, whatever our ids: the key is hashed to fit.
    let long_order = "o-".repeat(60);
    let deducted = channel.deduct(key(&long_order, "u1", 100)).await.unwrap();
    assert_eq!(deducted.points, 100);
    assert!(deducted.captured.contains_key("trade_no"), "{deducted:?}");
}

#[tokio::test]
async fn a_request_signed_with_another_secret_or_stale_is_refused_not_applied() {
    let (gateway, served) = Gateway::start(&["u1"], 1_000).await;
    let text = std::fs::read_to_string(&served.config).unwrap();
    let dir = served.config.parent().unwrap();
    std::fs::write(dir.join("gateway-md5.key"), "another-secret").unwrap();
    let channel = HttpChannel::new(AdapterConfig::load(&served.config).unwrap()).unwrap();
    let refused = channel.deduct(key("o-1", "u1", 100)).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Code::Unknown,
        "an unmapped refusal is never a success"
    );
    assert!(refused.message().contains("40004"), "{refused:?}");
    assert_eq!(gateway.book.points_of("u1"), Some(1_000));
    // Stamped an hour off: the gateway refuses it, nothing is taken.
    std::fs::write(
        dir.join("gateway-md5.key"),
        jifen_tests::partner::gateway::SECRET,
    )
    .unwrap();
    let stale = text.replace("utc_offset = \"+08:00\"", "utc_offset = \"+09:00\"");
    std::fs::write(&served.config, stale).unwrap();
    let channel = HttpChannel::new(AdapterConfig::load(&served.config).unwrap()).unwrap();
    assert!(channel.deduct(key("o-2", "u1", 100)).await.is_err());
    assert_eq!(gateway.book.points_of("u1"), Some(1_000));
}

#[tokio::test]
async fn an_xml_api_with_signed_xml_answers_runs_through_faults() {
    let (api, served) = XmlApi::start(&EVERYONE, START_POINTS).await;
    arm(&api.book.faults);
    for order in orders_through("eta", &served, &api.book).await {
        let line = order.lines.iter().find(|l| l.channel_id == "eta").unwrap();
        assert!(line.captured.contains_key("transaction_id"), "{line:?}");
    }
}
