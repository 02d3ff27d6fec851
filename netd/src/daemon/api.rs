//! The HTTP/JSON API on the daemon's unix socket. Requests are handled one
//! at a time (one lock around the service), so every change is applied and
//! persisted whole before the next one starts.
//!
//! Every request's caller is identified first (`identify_caller`, which
//! asks `caller::identify`): a guest may use the partition routes for its
//! own network, and nothing else. Serve the
//! router with `into_make_service_with_connect_info::<caller::PeerCred>()`.

use axum::{
    Extension, Json, Router,
    extract::{ConnectInfo, Path, Query, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use serde::Serialize;

use super::{
    caller::{self, Caller, PeerCred},
    error::ServiceError,
    events, metrics,
    requests::{
        AddGuest, AddPort, CleanupReport, CreateNetwork, GuestView, NetworkView, NodeView,
        PartitionQuery, PartitionRequest, PartitionView, PortView, Status, VerifyReport,
    },
    service::Shared,
};

/// `telemetry` is the service's (`Service::telemetry`), passed apart so
/// that neither events nor request timing ever wait for the service lock.
pub fn router(service: Shared, telemetry: std::sync::Arc<metrics::Telemetry>) -> Router {
    host_routes()
        .route_layer(middleware::from_fn(caller::host_only))
        .merge(partition_routes())
        .route_layer(middleware::from_fn(metrics::time_requests))
        .layer(middleware::from_fn_with_state(
            service.clone(),
            identify_caller,
        ))
        .layer(Extension(telemetry))
        .with_state(service)
}

/// What a guest may call: its own network's partition, by name or (the
/// guest-relative `/v1/partition`) without one.
fn partition_routes() -> Router<Shared> {
    Router::new()
        .route(
            "/v1/networks/{network}/partition",
            get(show_partition).put(set_partition),
        )
        .route(
            "/v1/networks/{network}/partition/verify",
            post(verify_partition),
        )
        .route(
            "/v1/partition",
            get(show_own_partition).put(set_own_partition),
        )
        .route("/v1/partition/verify", post(verify_own_partition))
}

/// Everything else: the host's alone.
fn host_routes() -> Router<Shared> {
    Router::new()
        .route("/v1/networks", get(list_networks).post(create_network))
        .route(
            "/v1/networks/{network}",
            get(inspect_network)
                .put(apply_resource)
                .delete(remove_network),
        )
        .route(
            "/v1/networks/{network}/guests",
            get(list_guests).post(add_guest),
        )
        .route(
            "/v1/networks/{network}/guests/{guest}",
            get(inspect_guest).delete(remove_guest),
        )
        .route("/v1/ports", get(list_all_ports))
        .route("/v1/networks/{network}/ports", get(list_ports))
        .route(
            "/v1/networks/{network}/guests/{guest}/ports",
            post(add_port),
        )
        // The spec is one percent-encoded segment (`client::segment`): its
        // '/' and ':' arrive decoded.
        .route(
            "/v1/networks/{network}/guests/{guest}/ports/{spec}",
            delete(remove_port),
        )
        .route("/v1/networks/{network}/connections", post(connect_guest))
        .route(
            "/v1/networks/{network}/connections/{guest}",
            delete(disconnect_guest),
        )
        .route("/v1/resolve/{name}", get(resolve))
        .route("/v1/status", get(status))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/state", get(desired_state))
        .route("/v1/events", get(events::stream))
        .route("/metrics", get(metrics::scrape))
        .route("/v1/cleanup", post(cleanup))
}

/// Middleware on every route: identifies the caller and hands it to the
/// handlers (and to `caller::host_only`) as a request extension.
async fn identify_caller(
    State(service): State<Shared>,
    mut request: Request,
    next: Next,
) -> Response {
    // Before any wait for the service: every timing figure starts here.
    request
        .extensions_mut()
        .insert(Arrived(std::time::Instant::now()));
    let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<PeerCred>>().cloned()
    else {
        return ServiceError::Forbidden(
            "cannot tell where this request comes from: the API is served without peer \
             credentials (serve it with `into_make_service_with_connect_info::<PeerCred>`)"
                .to_owned(),
        )
        .into_response();
    };
    // The host needs no look at the state: most requests never wait for
    // the service here.
    let caller = match caller::place(&peer) {
        Ok(placed) if placed.is_host() => Ok(Caller::Host),
        Ok(placed) => caller::identify(placed, &service.lock().await.guest_namespaces()),
        Err(err) => Err(err),
    };
    match caller {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(err) => err.into_response(),
    }
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if let ServiceError::Internal(err) = &self {
            tracing::error!("{err:#}");
        }
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ServiceError>;

/// When a request reached the daemon (set by `identify_caller`).
#[derive(Clone, Copy, Debug)]
pub struct Arrived(pub std::time::Instant);

/// A JSON request body. A body that does not fit (bad JSON, a missing or
/// an unknown field: a typo in `subnet` must not silently make another
/// network) is a 400 naming the problem, like every other bad request.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ServiceError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(ServiceError::Invalid(format!(
                "bad request body: {}: send only the fields the API documents (README, \"The \
                 API\"), spelled as there",
                rejection.body_text()
            ))),
        }
    }
}

fn ok<T: Serialize>(value: T) -> ApiResult<T> {
    Ok(Json(value))
}

async fn list_networks(State(svc): State<Shared>) -> ApiResult<Vec<NetworkView>> {
    ok(svc.lock().await.network_views())
}

async fn create_network(
    State(svc): State<Shared>,
    Body(request): Body<CreateNetwork>,
) -> ApiResult<NetworkView> {
    let name = request.name.clone();
    ok(svc
        .change(name, |svc, _| async move {
            svc.lock().await.create_network(request).await
        })
        .await?)
}

/// The declarative resource: the whole desired network.
async fn apply_resource(
    State(svc): State<Shared>,
    Path(network): Path<String>,
    Body(desired): Body<crate::resource::NetworkResource>,
) -> ApiResult<crate::daemon::requests::ResourceView> {
    ok(svc.apply_resource(network, desired).await?)
}

async fn inspect_network(
    State(svc): State<Shared>,
    Path(network): Path<String>,
) -> ApiResult<NetworkView> {
    let svc = svc.lock().await;
    ok(svc.network_view(svc.network(&network)?))
}

async fn remove_network(State(svc): State<Shared>, Path(network): Path<String>) -> ApiResult<()> {
    ok(svc
        .change(network, |svc, network| async move {
            svc.lock().await.remove_network(&network).await
        })
        .await?)
}

async fn list_guests(
    State(svc): State<Shared>,
    Path(network): Path<String>,
) -> ApiResult<Vec<GuestView>> {
    ok(svc.lock().await.guest_views(&network)?)
}

async fn add_guest(
    State(svc): State<Shared>,
    Path(network): Path<String>,
    Body(request): Body<AddGuest>,
) -> ApiResult<GuestView> {
    ok(svc.add_guest(network, request).await?)
}

async fn inspect_guest(
    State(svc): State<Shared>,
    Path((network, guest)): Path<(String, String)>,
) -> ApiResult<GuestView> {
    ok(svc.lock().await.inspect_guest(&network, &guest)?)
}

async fn connect_guest(
    State(svc): State<Shared>,
    Path(network): Path<String>,
    Json(request): Json<crate::daemon::requests::ConnectGuest>,
) -> ApiResult<GuestView> {
    ok(svc
        .change(network, |svc, network| async move {
            svc.lock().await.connect_guest(&network, request).await
        })
        .await?)
}

async fn disconnect_guest(
    State(svc): State<Shared>,
    Path((network, guest)): Path<(String, String)>,
) -> ApiResult<()> {
    ok(svc
        .change(network, |svc, network| async move {
            svc.lock().await.disconnect_guest(&network, &guest).await
        })
        .await?)
}

/// Guests' addresses by name, as the networks' resolvers answer them; 404
/// if no guest has the name.
async fn resolve(
    State(svc): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Vec<crate::dns::directory::Resolved>> {
    let found = svc.lock().await.resolve(&name);
    if found.is_empty() {
        return Err(ServiceError::NotFound(format!(
            "no guest is named {name:?}: give GUEST or GUEST.NETWORK (`netd guest ls NETWORK` \
             lists them)"
        )));
    }
    ok(found)
}

async fn remove_guest(
    State(svc): State<Shared>,
    Path((network, guest)): Path<(String, String)>,
) -> ApiResult<()> {
    ok(svc
        .change(network, |svc, network| async move {
            svc.lock().await.remove_guest(&network, &guest).await
        })
        .await?)
}

async fn list_all_ports(State(svc): State<Shared>) -> ApiResult<Vec<PortView>> {
    ok(svc.lock().await.list_ports(None)?)
}

async fn list_ports(
    State(svc): State<Shared>,
    Path(network): Path<String>,
) -> ApiResult<Vec<PortView>> {
    ok(svc.lock().await.list_ports(Some(&network))?)
}

async fn add_port(
    State(svc): State<Shared>,
    Path((network, guest)): Path<(String, String)>,
    Body(request): Body<AddPort>,
) -> ApiResult<PortView> {
    ok(svc
        .change(network, |svc, network| async move {
            svc.lock()
                .await
                .publish_port(&network, &guest, &request.spec)
                .await
        })
        .await?)
}

async fn remove_port(
    State(svc): State<Shared>,
    Path((network, guest, spec)): Path<(String, String, String)>,
) -> ApiResult<()> {
    ok(svc
        .change(network, |svc, network| async move {
            svc.lock().await.remove_port(&network, &guest, &spec)
        })
        .await?)
}

/// The service lock is held only to take the snapshot: reads never block
/// changes for long.
/// The cluster's nodes (`netd node ls`); refused by a single host.
async fn list_nodes(State(svc): State<Shared>) -> ApiResult<Vec<NodeView>> {
    ok(svc.lock().await.nodes().await?)
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    /// List every namespace's links, routes and programs too.
    #[serde(default)]
    namespaces: bool,
}

async fn status(State(svc): State<Shared>, Query(query): Query<StatusQuery>) -> ApiResult<Status> {
    let snapshot = svc.lock().await.status_snapshot();
    ok(snapshot.finish(query.namespaces).await)
}

/// The whole desired state, as the store holds it (`netd state dump`).
async fn desired_state(State(svc): State<Shared>) -> ApiResult<crate::model::State> {
    ok(svc.lock().await.desired_state().clone())
}

async fn cleanup(State(svc): State<Shared>) -> ApiResult<CleanupReport> {
    let shared = svc.clone();
    ok(svc
        .run_whole(async move {
            let _networks = shared.every_network().await;
            shared.lock().await.cleanup().await
        })
        .await?)
}

async fn show_partition(
    State(svc): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(network): Path<String>,
    Query(query): Query<PartitionQuery>,
) -> ApiResult<PartitionView> {
    show(svc, caller, Some(network), query).await
}

async fn show_own_partition(
    State(svc): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<PartitionQuery>,
) -> ApiResult<PartitionView> {
    show(svc, caller, None, query).await
}

async fn show(
    svc: Shared,
    caller: Caller,
    network: Option<String>,
    query: PartitionQuery,
) -> ApiResult<PartitionView> {
    let network = caller.partition_network(network.as_deref())?;
    let service = svc.lock().await;
    let mut view = service.show_partition(&network, query.matrix)?;
    view.cluster = service.cluster_partition(&network).await?;
    ok(view)
}

async fn set_partition(
    State(svc): State<Shared>,
    Extension(caller): Extension<Caller>,
    Extension(arrived): Extension<Arrived>,
    Path(network): Path<String>,
    Body(request): Body<PartitionRequest>,
) -> ApiResult<PartitionView> {
    set(svc, caller, arrived, Some(network), request).await
}

async fn set_own_partition(
    State(svc): State<Shared>,
    Extension(caller): Extension<Caller>,
    Extension(arrived): Extension<Arrived>,
    Body(request): Body<PartitionRequest>,
) -> ApiResult<PartitionView> {
    set(svc, caller, arrived, None, request).await
}

async fn set(
    svc: Shared,
    caller: Caller,
    arrived: Arrived,
    network: Option<String>,
    request: PartitionRequest,
) -> ApiResult<PartitionView> {
    // The service checks the permission (`Caller::may_partition`) itself.
    let network = caller.named_network(network.as_deref())?;
    ok(svc
        .change(network, move |svc, network| async move {
            svc.lock()
                .await
                .set_partition_anywhere(&network, request, caller, arrived.0)
                .await
        })
        .await?)
}

async fn verify_partition(
    State(svc): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(network): Path<String>,
) -> ApiResult<VerifyReport> {
    verify(svc, caller, Some(network)).await
}

async fn verify_own_partition(
    State(svc): State<Shared>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<VerifyReport> {
    verify(svc, caller, None).await
}

async fn verify(svc: Shared, caller: Caller, network: Option<String>) -> ApiResult<VerifyReport> {
    let network = caller.partition_network(network.as_deref())?;
    ok(svc.verify_partition(network).await?)
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, net::Ipv4Addr};

    use super::*;
    use crate::{
        client::{Client, segment},
        config::Config,
        daemon::service::Service,
        model::{Guest, GuestNetns, Network, State as Desired},
        store::Store,
        topology::Topology,
    };

    /// Serves the real router, over a unix socket, a state with guest
    /// web/web1 and nothing built in the kernel.
    fn serve(dir: &std::path::Path) -> (tokio::runtime::Runtime, Client) {
        let web1 = Guest {
            mac: None,
            interface: None,
            name: "web1".to_owned(),
            ip: Ipv4Addr::new(172, 18, 0, 1),
            netns: GuestNetns::Owned,
            created_at: 0,
            ports: Vec::new(),
            slot: 0,
            bridge_port: String::new(),
            labels: Default::default(),
        };
        let web = Network {
            internal: false,
            mtu: None,
            span: None,
            name: "web".to_owned(),
            subnet: crate::config::DEFAULT_SUBNET,
            routable: false,
            uplink_slot: 0,
            guests: BTreeMap::from([("web1".to_owned(), web1)]),
            guest_cursor: None,
            created_at: 0,
            partition: None,
        };
        let state = Desired {
            networks: BTreeMap::from([("web".to_owned(), web)]),
            uplink_cursor: Some(0),
        };
        let topology = Topology::new(Config::default()).unwrap();
        let service = Service::new(
            topology,
            Store::open(dir.join("state")).unwrap(),
            state,
            Box::new(crate::dataplane::testing::Recorder::default()),
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let socket = dir.join("api.sock");
        let listener = runtime
            .block_on(async { tokio::net::UnixListener::bind(&socket) })
            .unwrap();
        let telemetry = service.telemetry();
        let app = router(crate::daemon::service::Shared::new(service), telemetry)
            .into_make_service_with_connect_info::<caller::PeerCred>();
        runtime.spawn(async move { axum::serve(listener, app).await });
        (runtime, Client::new(&socket))
    }

    #[test]
    fn a_port_spec_survives_the_round_trip_through_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let (_runtime, client) = serve(dir.path());
        let spec = "0.0.0.0:8000-8010:80-90/udp";

        let added: PortView = client
            .post(
                "/v1/networks/web/guests/web1/ports",
                &AddPort { spec: spec.into() },
            )
            .unwrap();
        assert_eq!(added.spec, "8000-8010:80-90/udp");
        let all: Vec<PortView> = client.get("/v1/ports").unwrap();
        assert_eq!(all.len(), 1);

        let path = format!("/v1/networks/web/guests/web1/ports/{}", segment(spec));
        client.delete(&path).unwrap();
        let left: Vec<PortView> = client.get("/v1/networks/web/ports").unwrap();
        assert!(left.is_empty());

        let err = client.delete(&path).unwrap_err().to_string();
        assert!(
            err.contains("does not publish 8000-8010:80-90/udp"),
            "{err}"
        );
    }

    #[test]
    fn a_misspelt_status_option_is_refused_naming_the_right_one() {
        let dir = tempfile::tempdir().unwrap();
        let (_runtime, client) = serve(dir.path());
        let err = client
            .get::<Status>("/v1/status?namespace=true")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `namespace`"), "{err}");
        assert!(err.contains("`namespaces`"), "{err}");
    }

    #[test]
    fn the_host_sets_and_shows_a_partition_over_http() {
        let dir = tempfile::tempdir().unwrap();
        let (_runtime, client) = serve(dir.path());
        let words: Vec<String> = ["isolate", "web1", "--for", "5m"]
            .map(str::to_owned)
            .to_vec();
        let request = PartitionRequest::from_words(&words).unwrap();
        let set: PartitionView = client.put("/v1/networks/web/partition", &request).unwrap();
        assert_eq!(set.command, "netd partition web isolate web1 --for 5m");
        let state = set.state.expect("a partition");
        assert_eq!(state.set_by, "host");
        let shown: PartitionView = client.get("/v1/networks/web/partition").unwrap();
        assert_eq!(shown.state, Some(state.clone()));
        assert_eq!(shown.matrix, None, "the matrix only when asked");
        assert_eq!(shown.rules, None);
        let shown: PartitionView = client
            .get("/v1/networks/web/partition?matrix=true")
            .unwrap();
        assert_eq!(shown.state, Some(state));
        let matrix = shown.matrix.expect("asked for");
        assert!(matrix.contains("outside"), "{matrix}");
        assert_eq!(shown.rules.expect("asked for").outside_cut().len(), 1);
    }

    #[test]
    fn partition_errors_keep_their_message_and_status_over_http() {
        let dir = tempfile::tempdir().unwrap();
        let (_runtime, client) = serve(dir.path());
        let request: PartitionRequest =
            serde_json::from_value(serde_json::json!({"verb": "isolate", "guests": ["x"]}))
                .unwrap();
        let err = client
            .put::<_, PartitionView>("/v1/networks/web/partition", &request)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "network web has no guest named \"x\": `netd guest ls web` lists them"
        );
        let err = client
            .get::<PartitionView>("/v1/partition")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("this request names no network: from the host"),
            "{err}"
        );
    }

    #[test]
    fn verify_names_a_guest_whose_namespace_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let (_runtime, client) = serve(dir.path());
        let err = client
            .post_empty::<VerifyReport>("/v1/networks/web/partition/verify")
            .unwrap_err()
            .to_string();
        assert!(err.contains("guest web1's namespace is missing"), "{err}");
    }

    #[test]
    fn port_errors_keep_their_message_and_status_over_http() {
        let dir = tempfile::tempdir().unwrap();
        let (_runtime, client) = serve(dir.path());
        let err = client
            .post::<_, PortView>(
                "/v1/networks/web/guests/web1/ports",
                &AddPort {
                    spec: "127.0.0.1:80:80".into(),
                },
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("is loopback"), "{err}");
        let err = client
            .get::<Vec<PortView>>("/v1/networks/nope/ports")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no network named \"nope\""), "{err}");
    }
}
