//! Roles within a company and what each may do. The server checks a `Permission` on every
//! route; the UI only hides what the server would refuse anyway.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Manager,
    Admin,
    Owner,
}

/// Something a member may be allowed to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// See the company's conversations, sources and settings.
    Read,
    /// Answer customers, assign and close conversations.
    Reply,
    /// Change sources, CRM, automation and company settings; invite and remove members.
    Manage,
    /// Read the audit log.
    ReadAudit,
    /// Billing, deleting the company, making or removing owners.
    Own,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Manager, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn can(self, p: Permission) -> bool {
        match p {
            Permission::Read => true,
            Permission::Reply => self >= Role::Manager,
            Permission::Manage | Permission::ReadAudit => self >= Role::Admin,
            Permission::Own => self == Role::Owner,
        }
    }

    /// Whether a member with this role may give `target` to someone (or change someone who has it).
    /// Admins manage managers and viewers; only owners touch owners and admins.
    pub fn can_assign(self, target: Role) -> bool {
        match self {
            Role::Owner => true,
            Role::Admin => target <= Role::Manager,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Viewer.can(Permission::Read));
        assert!(!Role::Viewer.can(Permission::Reply));
        assert!(Role::Manager.can(Permission::Reply));
        assert!(!Role::Manager.can(Permission::Manage));
        assert!(Role::Admin.can(Permission::Manage));
        assert!(!Role::Admin.can(Permission::Own));
        assert!(Role::Owner.can(Permission::Own));
        assert!(Role::Admin.can_assign(Role::Manager));
        assert!(!Role::Admin.can_assign(Role::Admin));
        assert_eq!(Role::parse("admin"), Some(Role::Admin));
        assert_eq!(Role::parse("root"), None);
    }
}
