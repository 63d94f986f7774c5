//! Every server answers the health service and server reflection (v1 and v1alpha), and stops
//! gracefully: NOT_SERVING first, then closed.

use std::time::Duration;

use jifen_tests::{TestChannel, TestPortal};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn health(endpoint: String, service: &str) -> ServingStatus {
    let channel = Channel::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap();
    response.into_inner().status()
}

async fn listed_services_v1(endpoint: String) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let channel = Channel::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("not a service list: {response:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

async fn symbol_is_known_v1alpha(endpoint: String, symbol: &str) -> bool {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let channel = Channel::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(symbol.to_owned())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    matches!(
        response.message_response,
        Some(MessageResponse::FileDescriptorResponse(files)) if !files.file_descriptor_proto.is_empty()
    )
}

#[tokio::test]
async fn the_portal_reports_serving_and_lists_its_services() {
    let portal = TestPortal::start().await;
    let endpoint = portal.server.endpoint();
    assert_eq!(health(endpoint.clone(), "").await, ServingStatus::Serving);
    assert_eq!(
        health(endpoint.clone(), "jifen.v1.PortalService").await,
        ServingStatus::Serving
    );
    assert_eq!(
        listed_services_v1(endpoint.clone()).await,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "jifen.v1.PortalService"
        ]
    );
    assert!(symbol_is_known_v1alpha(endpoint, "jifen.v1.PortalService").await);
}

#[tokio::test]
async fn a_channel_reports_serving_and_lists_its_services() {
    let channel = TestChannel::start("alpha").await;
    let endpoint = channel.server.endpoint();
    assert_eq!(
        health(endpoint.clone(), "jifen.v1.ChannelService").await,
        ServingStatus::Serving
    );
    assert_eq!(
        listed_services_v1(endpoint.clone()).await,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "jifen.v1.ChannelService"
        ]
    );
    assert!(symbol_is_known_v1alpha(endpoint, "jifen.v1.DeductPointsRequest").await);
}

#[tokio::test]
async fn a_stopping_server_reports_not_serving_before_it_closes() {
    let mut channel = TestChannel::start_with_grace("alpha", Duration::from_secs(2)).await;
    let endpoint = channel.server.endpoint();
    let conn = Channel::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let client = HealthClient::new(conn);
    channel.server.shutdown_token().cancel();
    let status = jifen_tests::eventually("NOT_SERVING", Duration::from_secs(2), || {
        let mut client = client.clone();
        async move {
            let response = client
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "jifen.v1.ChannelService".into(),
                })
                .await
                .ok()?;
            let status = response.into_inner().status();
            (status == ServingStatus::NotServing).then_some(status)
        }
    })
    .await;
    assert_eq!(status, ServingStatus::NotServing);
    channel.server.stop().await;
}

#[tokio::test]
async fn a_connector_serves_health_for_its_probes() {
    use jifen_portal::connector::{PortalConnectorConfig, run_connector};
    let nats = jifen_tests::TestNats::start().await;
    let portal = TestPortal::start().await;
    // A port that was free a moment ago.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let config = PortalConnectorConfig {
        hold_ttl: jifen_mesh::barrier::DEFAULT_HOLD_TTL,
        tls: jifen_mesh::tls::TlsArgs::default(),
        portal_endpoint: portal.server.endpoint(),
        call_timeout: Duration::from_secs(2),
        concurrency: 4,
        health_listen: Some(addr),
        bus: jifen_mesh::config::BusArgs::anonymous(nats.url(), 1),
        retry: jifen_tests::mesh::test_retry(),
    };
    let running = tokio::spawn(run_connector(config, shutdown.clone()));
    let status = jifen_tests::eventually("the connector's health", Duration::from_secs(10), || {
        let endpoint = format!("http://{addr}");
        async move {
            let channel = Channel::from_shared(endpoint).ok()?.connect().await.ok()?;
            let response = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .ok()?;
            Some(response.into_inner().status())
        }
    })
    .await;
    assert_eq!(status, ServingStatus::Serving);
    shutdown.cancel();
    running.await.unwrap().unwrap();
}
