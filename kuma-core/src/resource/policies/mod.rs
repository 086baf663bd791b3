//! Policy types: connection policies (sources/destinations) and Dataplane
//! policies (selectors).

mod traffic_permission;
mod traffic_route;
mod health_check;
mod circuit_breaker;
mod fault_injection;
mod traffic_log;
mod traffic_trace;
mod proxy_template;
mod retry;
mod timeout;
mod util;

pub use traffic_permission::*;
pub use traffic_route::*;
pub use health_check::*;
pub use circuit_breaker::*;
pub use fault_injection::*;
pub use traffic_log::*;
pub use traffic_trace::*;
pub use proxy_template::*;
pub use retry::*;
pub use timeout::*;
