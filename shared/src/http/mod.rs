//! HTTP mapping for API Gateway, by concern: [`errors`] (Stripe style), [`identity`] (who is
//! calling), [`query`] (path and query parameters), [`request`] (the wrapper every handler
//! runs in) and [`responses`] (attempts, lists, summaries, replays).

mod errors;
mod identity;
mod query;
mod request;
mod responses;

pub use errors::*;
pub use identity::*;
pub use query::*;
pub use request::*;
pub use responses::*;
