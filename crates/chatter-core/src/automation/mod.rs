//! Automation (requirement R5): what Chatter does by itself on a company's conversations.
//! Working hours (`hours`), which the auto-replies and scheduled replies read, and the
//! auto-replies (`replies`).

pub mod hours;
pub mod replies;
