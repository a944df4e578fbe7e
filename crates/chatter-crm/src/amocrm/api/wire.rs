//! The shapes of amoCRM's REST v4 bodies: what is read from its answers and the JSON written
//! for contacts, leads and companies (§3), with the batch (`leads/complex`) results.

use serde::Deserialize;
use serde_json::{json, Value};

use super::super::{STATUS_LOST, STATUS_WON};
use crate::{
    normalize_phone, BatchItem, ContactChange, CrmContact, CrmDeal, CrmError, CrmId, DealCreated,
    DealDraft, FieldProblem, FieldScalar, FieldValue, MarkedDeal, NewContact, NewDeal,
};

#[derive(Deserialize)]
pub(super) struct Embedded<T> {
    #[serde(rename = "_embedded")]
    pub(super) embedded: T,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ContactsKey {
    pub(super) contacts: Vec<ContactRead>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct IdRead {
    pub(super) id: CrmId,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct CreatedKey {
    pub(super) contacts: Vec<IdRead>,
    pub(super) companies: Vec<IdRead>,
    pub(super) leads: Vec<IdRead>,
    pub(super) notes: Vec<IdRead>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct FieldRead {
    pub(super) field_id: Option<CrmId>,
    pub(super) field_code: Option<String>,
    pub(super) values: Vec<FieldItemRead>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct FieldItemRead {
    pub(super) value: Value,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ContactEmbedded {
    pub(super) leads: Vec<IdRead>,
    pub(super) companies: Vec<IdRead>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ContactRead {
    pub(super) id: CrmId,
    pub(super) name: String,
    pub(super) responsible_user_id: Option<CrmId>,
    pub(super) custom_fields_values: Option<Vec<FieldRead>>,
    #[serde(rename = "_embedded")]
    pub(super) embedded: ContactEmbedded,
}

impl ContactRead {
    pub(super) fn fields(&self) -> &[FieldRead] {
        self.custom_fields_values.as_deref().unwrap_or_default()
    }

    pub(super) fn values_of(&self, code: &str) -> Vec<String> {
        self.fields()
            .iter()
            .filter(|f| f.field_code.as_deref() == Some(code))
            .flat_map(|f| f.values.iter())
            .filter_map(|v| scalar_text(&v.value))
            .collect()
    }

    pub(super) fn phones(&self) -> Vec<String> {
        self.values_of("PHONE")
            .into_iter()
            .map(|p| normalize_phone(&p).unwrap_or(p))
            .collect()
    }

    pub(super) fn emails(&self) -> Vec<String> {
        self.values_of("EMAIL")
            .into_iter()
            .map(|e| e.trim().to_lowercase())
            .collect()
    }

    pub(super) fn has_value(&self, field_id: Option<CrmId>, wanted: &str) -> bool {
        self.fields()
            .iter()
            .filter(|f| field_id.is_none() || f.field_id == field_id)
            .flat_map(|f| f.values.iter())
            .filter_map(|v| scalar_text(&v.value))
            .any(|v| v.trim() == wanted)
    }

    pub(super) fn into_contact(self) -> CrmContact {
        let phones = self.phones();
        let emails = self.emails();
        CrmContact {
            id: self.id,
            name: self.name,
            responsible_user_id: self.responsible_user_id,
            phones,
            emails,
            company_id: self.embedded.companies.first().map(|c| c.id),
            deal_ids: self.embedded.leads.iter().map(|l| l.id).collect(),
        }
    }
}

pub(super) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct LeadRead {
    pub(super) id: CrmId,
    pub(super) name: String,
    pub(super) pipeline_id: CrmId,
    pub(super) status_id: CrmId,
    pub(super) responsible_user_id: Option<CrmId>,
    pub(super) created_at: i64,
    pub(super) is_deleted: bool,
}

impl LeadRead {
    pub(super) fn into_deal(self) -> CrmDeal {
        CrmDeal {
            closed: self.status_id == STATUS_WON || self.status_id == STATUS_LOST,
            id: self.id,
            name: self.name,
            pipeline_id: self.pipeline_id,
            status_id: self.status_id,
            responsible_user_id: self.responsible_user_id,
            created_at: self.created_at,
        }
    }
}

/// A lead as a search returns it, with its fields and contacts (`with=contacts`).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct MarkedLeadRead {
    pub(super) id: CrmId,
    pub(super) is_deleted: bool,
    pub(super) custom_fields_values: Option<Vec<FieldRead>>,
    #[serde(rename = "_embedded")]
    pub(super) embedded: LeadEmbedded,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct LeadEmbedded {
    pub(super) contacts: Vec<LinkedContactRead>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct LinkedContactRead {
    pub(super) id: CrmId,
    pub(super) is_main: bool,
}

impl MarkedLeadRead {
    /// The deal, when one of its field values holds `marker` (the search is by substring over
    /// every field and the name, so candidates are checked here).
    pub(super) fn marked(self, marker: &str) -> Option<MarkedDeal> {
        let value = self
            .custom_fields_values
            .iter()
            .flatten()
            .flat_map(|f| f.values.iter())
            .filter_map(|v| scalar_text(&v.value))
            .find(|v| v.contains(marker))?;
        let contacts = &self.embedded.contacts;
        let contact_id = contacts
            .iter()
            .find(|c| c.is_main)
            .or_else(|| contacts.first())
            .map(|c| c.id);
        Some(MarkedDeal {
            deal_id: self.id,
            contact_id,
            value,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct AccountRead {
    pub(super) id: CrmId,
    pub(super) name: String,
    pub(super) subdomain: String,
    pub(super) current_user_id: CrmId,
    pub(super) country: Option<String>,
    pub(super) is_unsorted_on: bool,
    pub(super) amojo_id: Option<String>,
    #[serde(rename = "_embedded")]
    pub(super) embedded: Value,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct PipelineRead {
    pub(super) id: CrmId,
    pub(super) name: String,
    pub(super) sort: i64,
    pub(super) is_main: bool,
    pub(super) is_archive: bool,
    #[serde(rename = "_embedded")]
    pub(super) embedded: StatusesKey,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct StatusesKey {
    pub(super) statuses: Vec<StatusRead>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct StatusRead {
    pub(super) id: CrmId,
    pub(super) name: String,
    pub(super) sort: i64,
    pub(super) color: Option<String>,
    #[serde(rename = "type")]
    pub(super) kind: i64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RightsRead {
    pub(super) is_admin: bool,
    pub(super) is_free: bool,
    pub(super) is_active: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct UserRead {
    pub(super) id: CrmId,
    pub(super) name: String,
    pub(super) email: Option<String>,
    pub(super) lang: Option<String>,
    pub(super) amojo_id: Option<String>,
    pub(super) rights: RightsRead,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct CustomFieldRead {
    pub(super) id: CrmId,
    pub(super) name: String,
    pub(super) code: Option<String>,
    #[serde(rename = "type")]
    pub(super) field_type: String,
    pub(super) enums: Option<Vec<EnumRead>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct EnumRead {
    pub(super) id: CrmId,
    pub(super) value: String,
}

#[derive(Deserialize)]
pub(super) struct ComplexResult {
    pub(super) id: CrmId,
    pub(super) contact_id: Option<CrmId>,
    pub(super) company_id: Option<CrmId>,
    /// The docs show an array (several when duplicates collapsed); tolerate a bare string.
    pub(super) request_id: Value,
    #[serde(default)]
    pub(super) merged: bool,
}

// ---- wire shapes (writes) ----

pub(super) fn field_values_json(fields: &[FieldValue]) -> Vec<Value> {
    fields
        .iter()
        .map(|f| {
            let values: Vec<Value> = f
                .values
                .iter()
                .map(|v| match v {
                    FieldScalar::Text(s) => json!({ "value": s }),
                    FieldScalar::Flag(b) => json!({ "value": b }),
                    FieldScalar::Date(ts) => json!({ "value": ts }),
                    FieldScalar::Choice(id) => json!({ "enum_id": id }),
                })
                .collect();
            json!({ "field_id": f.field_id, "values": values })
        })
        .collect()
}

pub(super) fn tags_json(tags: &[String]) -> Vec<Value> {
    tags.iter().map(|t| json!({ "name": t })).collect()
}

/// A contact's fields for `POST /contacts` and `leads/complex`: PHONE (MOB) and EMAIL (WORK)
/// by field code (§3.4), then our custom fields.
pub(super) fn contact_json(c: &NewContact) -> Value {
    let mut fields = Vec::new();
    if !c.phones.is_empty() {
        let values: Vec<Value> = c
            .phones
            .iter()
            .map(|p| json!({ "value": p, "enum_code": "MOB" }))
            .collect();
        fields.push(json!({ "field_code": "PHONE", "values": values }));
    }
    if !c.emails.is_empty() {
        let values: Vec<Value> = c
            .emails
            .iter()
            .map(|e| json!({ "value": e, "enum_code": "WORK" }))
            .collect();
        fields.push(json!({ "field_code": "EMAIL", "values": values }));
    }
    fields.extend(field_values_json(&c.fields));
    let mut o = json!({ "name": c.name });
    if let Some(f) = &c.first_name {
        o["first_name"] = json!(f);
    }
    if let Some(l) = &c.last_name {
        o["last_name"] = json!(l);
    }
    if let Some(u) = c.responsible_user_id {
        o["responsible_user_id"] = json!(u);
    }
    if !fields.is_empty() {
        o["custom_fields_values"] = Value::Array(fields);
    }
    if !c.tags.is_empty() {
        o["tags_to_add"] = Value::Array(tags_json(&c.tags));
    }
    o
}

/// `PATCH /contacts/{id}`: the name, and PHONE and EMAIL by field code with their whole value
/// lists (`values: null` clears a field).
pub(super) fn contact_change_json(c: &ContactChange) -> Value {
    let values = |list: &[String], code: &str| -> Value {
        if list.is_empty() {
            return Value::Null;
        }
        Value::Array(
            list.iter()
                .map(|v| json!({ "value": v, "enum_code": code }))
                .collect(),
        )
    };
    json!({
        "name": c.name,
        "custom_fields_values": [
            { "field_code": "PHONE", "values": values(&c.phones, "MOB") },
            { "field_code": "EMAIL", "values": values(&c.emails, "WORK") },
        ],
    })
}

pub(super) fn lead_json(d: &NewDeal) -> Value {
    let mut o = json!({ "name": d.name, "request_id": d.request_id });
    if let Some(p) = d.pipeline_id {
        o["pipeline_id"] = json!(p);
    }
    if let Some(s) = d.status_id {
        o["status_id"] = json!(s);
    }
    if let Some(u) = d.responsible_user_id {
        o["responsible_user_id"] = json!(u);
    }
    if !d.fields.is_empty() {
        o["custom_fields_values"] = Value::Array(field_values_json(&d.fields));
    }
    if !d.tags.is_empty() {
        o["tags_to_add"] = Value::Array(tags_json(&d.tags));
    }
    o
}

pub(super) fn company_json(c: &crate::NewCompany) -> Value {
    let mut o = json!({ "name": c.name });
    if let Some(u) = c.responsible_user_id {
        o["responsible_user_id"] = json!(u);
    }
    o
}

pub(super) fn first_id(ids: &[IdRead], what: &str) -> Result<CrmId, CrmError> {
    ids.first()
        .map(|i| i.id)
        .ok_or_else(|| CrmError::permanent(format!("{what}: the answer lists nothing created")))
}

/// Batch results from a `leads/complex` answer, one per request id we sent.
pub(super) fn complex_results(drafts: &[DealDraft], results: Vec<ComplexResult>) -> Vec<BatchItem> {
    drafts
        .iter()
        .map(|d| {
            let rid = &d.deal.request_id;
            let found = results.iter().find(|r| match &r.request_id {
                Value::Array(ids) => ids.iter().any(|i| i.as_str() == Some(rid)),
                Value::String(s) => s == rid,
                _ => false,
            });
            BatchItem {
                request_id: rid.clone(),
                result: match found {
                    Some(r) => Ok(DealCreated {
                        deal_id: r.id,
                        contact_id: r.contact_id,
                        company_id: r.company_id,
                        merged: r.merged,
                    }),
                    None => Err(CrmError::permanent(
                        "amoCRM did not report this item in its answer",
                    )),
                },
            }
        })
        .collect()
}

/// A batch refused with `validation-errors`: amoCRM creates nothing then, so the items it named
/// fail for good and the others fail transiently (send them again without the bad ones).
pub(super) fn refused_batch(
    drafts: &[DealDraft],
    message: &str,
    fields: &[FieldProblem],
) -> Vec<BatchItem> {
    drafts
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let rid = &d.deal.request_id;
            let index = i.to_string();
            // Without our request_id amoCRM keys errors by the item's index.
            let mine: Vec<FieldProblem> = fields
                .iter()
                .filter(|f| {
                    f.request_id.as_deref() == Some(rid) || f.request_id.as_deref() == Some(&index)
                })
                .cloned()
                .collect();
            let result = if mine.is_empty() {
                Err(CrmError::Transient(
                    "not created: amoCRM refused another item of the same batch".into(),
                ))
            } else {
                Err(CrmError::Permanent {
                    message: message.to_owned(),
                    fields: mine,
                })
            };
            BatchItem {
                request_id: rid.clone(),
                result,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DraftContact;

    #[test]
    fn contact_json_uses_phone_and_email_codes() {
        let c = NewContact {
            name: "Ivan Petrov".into(),
            phones: vec!["+79991234567".into()],
            emails: vec!["i@x.ru".into()],
            responsible_user_id: Some(5),
            fields: vec![FieldValue {
                field_id: 77,
                values: vec![FieldScalar::Text("@ivan".into()), FieldScalar::Choice(3)],
            }],
            ..NewContact::default()
        };
        assert_eq!(
            contact_json(&c),
            json!({
                "name": "Ivan Petrov",
                "responsible_user_id": 5,
                "custom_fields_values": [
                    {"field_code": "PHONE", "values": [{"value": "+79991234567", "enum_code": "MOB"}]},
                    {"field_code": "EMAIL", "values": [{"value": "i@x.ru", "enum_code": "WORK"}]},
                    {"field_id": 77, "values": [{"value": "@ivan"}, {"enum_id": 3}]}
                ]
            })
        );
    }

    #[test]
    fn a_contact_change_sets_or_clears_phone_and_email() {
        let c = ContactChange {
            name: "Ольга".into(),
            phones: vec!["+79991234567".into()],
            emails: Vec::new(),
        };
        assert_eq!(
            contact_change_json(&c),
            json!({"name": "Ольга", "custom_fields_values": [
                {"field_code": "PHONE", "values": [{"value": "+79991234567", "enum_code": "MOB"}]},
                {"field_code": "EMAIL", "values": null},
            ]})
        );
    }

    #[test]
    fn refused_batch_blames_only_the_named_items() {
        let draft = |rid: &str| DealDraft {
            deal: NewDeal {
                request_id: rid.into(),
                ..NewDeal::default()
            },
            contact: DraftContact::Existing(1),
        };
        let drafts = [draft("a"), draft("b")];
        let fields = vec![FieldProblem {
            request_id: Some("b".into()),
            code: "X".into(),
            path: "name".into(),
            detail: "bad".into(),
        }];
        let items = refused_batch(&drafts, "refused", &fields);
        assert!(matches!(items[0].result, Err(CrmError::Transient(_))));
        assert!(
            matches!(&items[1].result, Err(CrmError::Permanent { fields, .. }) if fields.len() == 1)
        );
    }
}
