//! Policy types: connection policies (sources/destinations) and Dataplane
//! policies (selectors).

mod circuit_breaker;
mod fault_injection;
mod health_check;
mod proxy_template;
mod retry;
mod timeout;
mod traffic_log;
mod traffic_permission;
mod traffic_route;
mod traffic_trace;
mod util;

pub use circuit_breaker::*;
pub use fault_injection::*;
pub use health_check::*;
pub use proxy_template::*;
pub use retry::*;
pub use timeout::*;
pub use traffic_log::*;
pub use traffic_permission::*;
pub use traffic_route::*;
pub use traffic_trace::*;
