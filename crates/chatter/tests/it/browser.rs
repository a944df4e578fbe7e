//! (tests come with this area's work)
