//! Automation (requirement R5): what Chatter does by itself on a company's conversations.
//! Today: working hours, which the auto-replies and scheduled replies read.

pub mod hours;
