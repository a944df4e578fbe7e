//! Telegram Bot API (specs/channels.md §1): client, update parsing, webhook secret check.
