//! One way to create a DynamoDB table in the emulator, for the test binaries of every crate
//! that needs one (each includes this file with `#[path]`, since the test crate's library
//! does not depend on the SDK).

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

/// Creates the on-demand table `name` keyed by the string attribute `hash` and, when given,
/// the string sort key `range`; panics when the emulator refuses it.
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    hash: &str,
    range: Option<&str>,
) {
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for (attribute, kind) in [(Some(hash), KeyType::Hash), (range, KeyType::Range)] {
        let Some(attribute) = attribute else { continue };
        request = request
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attribute)
                    .key_type(kind)
                    .build()
                    .expect("key schema element"),
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attribute)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attribute definition"),
            );
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("create table {name}: {e:?}"));
}
