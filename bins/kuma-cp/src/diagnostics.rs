//! The diagnostics server (`xdsServer.diagnosticsPort`, 5680): `/healthy`,
//! `/ready` and Prometheus-format `/metrics`.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kuma_core::resource::ResourceType;
use kuma_core::store::{Event, ListRequest, ResourceStore};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

/// Labels of `kuma_cp_resources`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    /// Resource type name.
    pub r#type: String,
}

/// Labels of `kuma_cp_api_requests`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// HTTP status code.
    pub code: String,
}

/// Everything the diagnostics server reports.
pub struct Diagnostics {
    registry: Registry,
    ready: AtomicBool,
    /// Whether the store answers (see [`Diagnostics::follow_store_health`]).
    store_healthy: AtomicBool,
    /// Resources in the store, per type.
    pub resources: Family<TypeLabel, Gauge>,
    /// API requests served, per method and status.
    pub api_requests: Family<RequestLabels, Counter>,
}

impl Diagnostics {
    /// A registry with the control plane's metrics; `register` adds those
    /// of other components (e.g. DNS) under the `kuma_cp` prefix.
    pub fn new(version: &str, register: impl FnOnce(&mut Registry)) -> Arc<Self> {
        let mut registry = Registry::with_prefix("kuma_cp");
        register(&mut registry);
        let resources = Family::<TypeLabel, Gauge>::default();
        registry.register(
            "resources",
            "Resources in the store, per type",
            resources.clone(),
        );
        let api_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "HTTP API requests served",
            api_requests.clone(),
        );
        let info = Family::<Vec<(String, String)>, Gauge>::default();
        info.get_or_create(&vec![("version".to_string(), version.to_string())])
            .set(1);
        registry.register("build_info", "Version of this control plane", info);
        Arc::new(Self {
            registry,
            ready: AtomicBool::new(false),
            store_healthy: AtomicBool::new(true),
            resources,
            api_requests,
        })
    }

    /// Marks the control plane ready: every server is bound and the default
    /// resources exist.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Keeps `/ready` in step with the store's health: while `healthy` is
    /// false (the Postgres store lost its database) the control plane is
    /// not ready, so a load balancer sends users to another replica. Ends
    /// when the store's side of the channel is gone.
    pub async fn follow_store_health(self: Arc<Self>, mut healthy: watch::Receiver<bool>) {
        loop {
            let up = *healthy.borrow_and_update();
            if self.store_healthy.swap(up, Ordering::SeqCst) != up {
                if up {
                    tracing::info!("the store is reachable again: ready");
                } else {
                    tracing::warn!("the store is unreachable: not ready until it is back");
                }
            }
            if healthy.changed().await.is_err() {
                return;
            }
        }
    }

    /// The router of the diagnostics server.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/healthy", get(|| async { "OK" }))
            .route("/ready", get(ready))
            .route("/metrics", get(metrics))
            .with_state(self.clone())
    }

    /// Keeps `kuma_cp_resources` in step with the store, driven by its
    /// events: a full recount on `Resync` (at the start, and when the
    /// subscription's queue overflowed), a count change per event after.
    pub async fn follow_store(self: Arc<Self>, store: Arc<dyn ResourceStore>) {
        let mut events = store.subscribe(ResourceType::ALL);
        loop {
            match events.next().await {
                Some(Event::Changed(e)) => {
                    let g = self.resources.get_or_create(&TypeLabel {
                        r#type: e.key.resource_type.name().to_string(),
                    });
                    match e.kind {
                        kuma_core::store::EventKind::Added => {
                            g.inc();
                        }
                        kuma_core::store::EventKind::Deleted => {
                            g.dec();
                        }
                        kuma_core::store::EventKind::Updated => {}
                    }
                }
                Some(Event::Resync) => self.recount(&*store).await,
                None => return,
            }
        }
    }

    async fn recount(&self, store: &dyn ResourceStore) {
        for ty in ResourceType::ALL {
            if let Ok(page) = store.list(&ListRequest::all(*ty).paged(1, None)).await {
                self.resources
                    .get_or_create(&TypeLabel {
                        r#type: ty.name().to_string(),
                    })
                    .set(page.total as i64);
            }
        }
    }
}

async fn ready(State(d): State<Arc<Diagnostics>>) -> Response {
    if d.ready.load(Ordering::SeqCst) && d.store_healthy.load(Ordering::SeqCst) {
        (StatusCode::OK, "READY").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "NOT READY").into_response()
    }
}

async fn metrics(State(d): State<Arc<Diagnostics>>) -> Response {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &d.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
