//! The API source's inbound endpoint (`POST /hooks/api/{source_id}`), which stores what a
//! customer's system sends through the ordinary ingest; everything else about the API source
//! (management, signing, outgoing webhooks) is `crate::api_source`, re-exported here.

pub use crate::api_source::*;
use crate::api_source::{secret_of, MAX_ID, MAX_TEXT};
use crate::inbox::ingest::Ingester;
use crate::inbox::Ingested;

mod inbound;
pub use inbound::*;
