//! Conformance with Aeron's archive schema: reads `aeron-archive-codecs.xml` from the
//! rusteron-client crate this workspace builds against (found with `cargo metadata`), computes
//! every supported message's layout from it by SBE's rules, and compares it with the codec's
//! tables, and with the bytes the encoder writes.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use common::{all_samples, Fill, Mode, Wire, REQUIRED_TEMPLATE_IDS};
use roxmltree::{Document, Node};
use tern_protocol::*;

const SCHEMA_IN_CRATE: &str =
    "aeron/aeron-archive/src/main/resources/archive/aeron-archive-codecs.xml";

/// The rusteron-client crate's directory, from `cargo metadata` (never skipped: a missing crate
/// is a failure).
fn rusteron_client_dir() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(&cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .with_context(|| format!("running `{cargo} metadata`"))?;
    ensure!(
        output.status.success(),
        "`cargo metadata` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("parsing `cargo metadata` output")?;
    let packages = metadata["packages"]
        .as_array()
        .context("`cargo metadata` output has no packages")?;
    let manifests: Vec<(&str, &str)> = packages
        .iter()
        .filter(|package| package["name"] == "rusteron-client")
        .filter_map(|package| {
            Some((
                package["version"].as_str()?,
                package["manifest_path"].as_str()?,
            ))
        })
        .collect();
    let Some((version, manifest)) = manifests.first() else {
        bail!(
            "the rusteron-client package is not in `cargo metadata`'s output: the conformance test \
             needs it (a dependency of tern-transport) to read Aeron's archive schema"
        );
    };
    ensure!(
        manifests.len() == 1,
        "several rusteron-client versions: {manifests:?}"
    );
    let dir = Path::new(manifest)
        .parent()
        .with_context(|| format!("manifest path {manifest} has no directory"))?;
    eprintln!(
        "reading Aeron's schema from rusteron-client {version} at {}",
        dir.display()
    );
    Ok(dir.to_path_buf())
}

fn load_schema_text() -> Result<String> {
    let path = rusteron_client_dir()?.join(SCHEMA_IN_CRATE);
    std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (the conformance test needs Aeron's archive schema)",
            path.display()
        )
    })
}

/// What SBE says about a type, as far as layout goes.
#[derive(Debug, Clone)]
enum SbeType {
    /// A primitive, or a `<type>` of one: resolved primitive name, size, null value if numeric.
    Primitive {
        primitive: String,
        size: usize,
        null_value: Option<i64>,
    },
    /// An `<enum>`: its encoding's size and primitive, its valid values.
    Enum {
        encoding: String,
        size: usize,
        values: Vec<(String, i32)>,
    },
    /// A `<composite>`: members with offsets and sizes, and its total size.
    Composite {
        members: Vec<CompositeMember>,
        size: usize,
    },
}

#[derive(Debug, Clone)]
struct CompositeMember {
    name: String,
    offset: usize,
    size: usize,
    primitive: String,
    max_value: Option<String>,
    character_encoding: Option<String>,
}

/// SBE's built-in primitives: size and default null value (SBE spec, "Encoding of null values").
fn primitive(name: &str) -> Option<(usize, Option<i64>)> {
    Some(match name {
        "char" => (1, Some(0)),
        "int8" => (1, Some(i64::from(i8::MIN))),
        "uint8" => (1, Some(i64::from(u8::MAX))),
        "int16" => (2, Some(i64::from(i16::MIN))),
        "uint16" => (2, Some(i64::from(u16::MAX))),
        "int32" => (4, Some(i64::from(i32::MIN))),
        "uint32" => (4, Some(i64::from(u32::MAX))),
        "int64" => (8, Some(i64::MIN)),
        "uint64" => (8, None),
        "float" => (4, None),
        "double" => (8, None),
        _ => return None,
    })
}

fn attr<'a>(node: &Node<'a, '_>, name: &str) -> Result<&'a str> {
    node.attribute(name).with_context(|| {
        format!(
            "<{} name={:?}> has no {name} attribute",
            node.tag_name().name(),
            node.attribute("name")
        )
    })
}

fn parse_number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    text.trim()
        .parse()
        .with_context(|| format!("{what}: {text:?} is not a number"))
}

fn since_version(node: &Node) -> Result<u16> {
    node.attribute("sinceVersion")
        .map_or(Ok(0), |text| parse_number(text, "sinceVersion"))
}

fn elements<'a, 'input>(node: Node<'a, 'input>) -> impl Iterator<Item = Node<'a, 'input>> {
    node.children().filter(Node::is_element)
}

struct Schema<'a, 'input> {
    root: Node<'a, 'input>,
    types: HashMap<String, SbeType>,
}

impl<'a, 'input> Schema<'a, 'input> {
    fn parse(document: &'a Document<'input>) -> Result<Self> {
        let root = document.root_element();
        ensure!(
            root.tag_name().name() == "messageSchema",
            "root is not messageSchema"
        );
        let mut types = HashMap::new();
        for types_node in elements(root).filter(|node| node.tag_name().name() == "types") {
            for node in elements(types_node) {
                let name = attr(&node, "name")?.to_string();
                let sbe_type = match node.tag_name().name() {
                    "type" => Self::simple_type(&node)?,
                    "enum" => Self::enum_type(&node)?,
                    "composite" => Self::composite_type(&node)?,
                    other => bail!("unexpected <{other}> in <types>"),
                };
                types.insert(name, sbe_type);
            }
        }
        Ok(Self { root, types })
    }

    fn simple_type(node: &Node) -> Result<SbeType> {
        let primitive_name = attr(node, "primitiveType")?;
        let (size, default_null) = primitive(primitive_name)
            .with_context(|| format!("unknown primitive {primitive_name}"))?;
        let length: usize = node
            .attribute("length")
            .map_or(Ok(1), |text| parse_number(text, "length"))?;
        let null_value = match node.attribute("nullValue") {
            Some(text) => Some(parse_number(text, "nullValue")?),
            None => default_null,
        };
        Ok(SbeType::Primitive {
            primitive: primitive_name.to_string(),
            size: size * length,
            null_value,
        })
    }

    fn enum_type(node: &Node) -> Result<SbeType> {
        let encoding = attr(node, "encodingType")?;
        let (size, _) = primitive(encoding).with_context(|| format!("enum encoding {encoding}"))?;
        let values = elements(*node)
            .filter(|value| value.tag_name().name() == "validValue")
            .map(|value| {
                let name = attr(&value, "name")?.to_string();
                let text = value.text().unwrap_or_default();
                Ok((name, parse_number(text, "validValue")?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SbeType::Enum {
            encoding: encoding.to_string(),
            size,
            values,
        })
    }

    fn composite_type(node: &Node) -> Result<SbeType> {
        let mut members = Vec::new();
        let mut offset = 0;
        for member in elements(*node) {
            ensure!(
                member.tag_name().name() == "type",
                "composite member <{}> not handled",
                member.tag_name().name()
            );
            let primitive_name = attr(&member, "primitiveType")?;
            let (unit, _) = primitive(primitive_name)
                .with_context(|| format!("unknown primitive {primitive_name}"))?;
            let length: usize = member
                .attribute("length")
                .map_or(Ok(1), |text| parse_number(text, "length"))?;
            if let Some(explicit) = member.attribute("offset") {
                offset = parse_number(explicit, "offset")?;
            }
            members.push(CompositeMember {
                name: attr(&member, "name")?.to_string(),
                offset,
                size: unit * length,
                primitive: primitive_name.to_string(),
                max_value: member.attribute("maxValue").map(str::to_string),
                character_encoding: member.attribute("characterEncoding").map(str::to_string),
            });
            offset += unit * length;
        }
        Ok(SbeType::Composite {
            members,
            size: offset,
        })
    }

    fn resolve(&self, type_name: &str) -> Result<SbeType> {
        if let Some((size, null_value)) = primitive(type_name) {
            return Ok(SbeType::Primitive {
                primitive: type_name.to_string(),
                size,
                null_value,
            });
        }
        self.types
            .get(type_name)
            .cloned()
            .with_context(|| format!("type {type_name} is not defined in the schema"))
    }

    fn message(&self, template_id: u16) -> Result<Node<'a, 'input>> {
        elements(self.root)
            .find(|node| {
                node.tag_name().name() == "message"
                    && node.attribute("id") == Some(template_id.to_string().as_str())
            })
            .with_context(|| format!("template {template_id} is not in the schema"))
    }
}

/// A message's layout as SBE computes it from the schema.
#[derive(Debug)]
struct SchemaLayout {
    name: String,
    since_version: u16,
    block_length: usize,
    fields: Vec<FieldSpecOwned>,
    var_data: Vec<(String, String, usize, u16)>,
}

#[derive(Debug, PartialEq)]
struct FieldSpecOwned {
    name: String,
    offset: usize,
    size: usize,
    sbe_type: String,
    null_value: Option<i64>,
    since_version: u16,
}

impl From<&FieldSpec> for FieldSpecOwned {
    fn from(field: &FieldSpec) -> Self {
        Self {
            name: field.name.to_string(),
            offset: field.offset,
            size: field.size,
            sbe_type: field.sbe_type.to_string(),
            null_value: field.null_value,
            since_version: field.since_version,
        }
    }
}

fn schema_layout(schema: &Schema, template_id: u16) -> Result<SchemaLayout> {
    let node = schema.message(template_id)?;
    let name = attr(&node, "name")?.to_string();
    let mut fields = Vec::new();
    let mut var_data = Vec::new();
    let mut offset = 0;
    for child in elements(node) {
        match child.tag_name().name() {
            "field" => {
                ensure!(var_data.is_empty(), "{name}: a field after var data");
                let field_name = attr(&child, "name")?;
                let type_name = attr(&child, "type")?;
                if let Some(explicit) = child.attribute("offset") {
                    offset = parse_number(explicit, "offset")?;
                }
                let (size, sbe_type, null_value) = match schema.resolve(type_name)? {
                    SbeType::Primitive {
                        primitive,
                        size,
                        null_value,
                    } => (size, primitive, null_value),
                    SbeType::Enum { size, .. } => (size, type_name.to_string(), None),
                    SbeType::Composite { .. } => {
                        bail!("{name}.{field_name}: composite fields are not used by the codec")
                    }
                };
                fields.push(FieldSpecOwned {
                    name: field_name.to_string(),
                    offset,
                    size,
                    sbe_type,
                    null_value,
                    since_version: since_version(&child)?,
                });
                offset += size;
            }
            "group" => bail!("{name}: repeating groups are not supported by the codec"),
            "data" => {
                let type_name = attr(&child, "type")?;
                let SbeType::Composite { members, .. } = schema.resolve(type_name)? else {
                    bail!("{name}: data type {type_name} is not a composite");
                };
                let length = members
                    .iter()
                    .find(|member| member.name == "length")
                    .with_context(|| format!("{type_name} has no length"))?;
                var_data.push((
                    attr(&child, "name")?.to_string(),
                    type_name.to_string(),
                    length.size,
                    since_version(&child)?,
                ));
            }
            other => bail!("{name}: unexpected <{other}>"),
        }
    }
    let block_length = match node.attribute("blockLength") {
        Some(text) => parse_number(text, "blockLength")?,
        None => offset,
    };
    Ok(SchemaLayout {
        name,
        since_version: since_version(&node)?,
        block_length,
        fields,
        var_data,
    })
}

fn with_schema(check: impl FnOnce(&Schema) -> Result<()>) -> Result<()> {
    let text = load_schema_text()?;
    let document = Document::parse(&text).context("parsing aeron-archive-codecs.xml")?;
    let schema = Schema::parse(&document)?;
    check(&schema)
}

#[test]
fn schema_id_version_and_byte_order_match() -> Result<()> {
    with_schema(|schema| {
        let id: u16 = parse_number(attr(&schema.root, "id")?, "schema id")?;
        let version: u16 = parse_number(attr(&schema.root, "version")?, "schema version")?;
        assert_eq!(id, SCHEMA_ID, "schema id");
        assert_eq!(version, SCHEMA_VERSION, "schema version");
        assert_eq!(attr(&schema.root, "byteOrder")?, "littleEndian");
        assert_ne!(
            TERN_SCHEMA_ID, SCHEMA_ID,
            "tern's extension schema id must differ"
        );
        Ok(())
    })
}

#[test]
fn message_header_matches_schema_composite() -> Result<()> {
    with_schema(|schema| {
        let SbeType::Composite { members, size } = schema.resolve("messageHeader")? else {
            bail!("messageHeader is not a composite");
        };
        assert_eq!(size, MESSAGE_HEADER_LENGTH);
        let ours: Vec<(&str, usize, usize, &str)> = MessageHeader::FIELDS
            .iter()
            .map(|field| (field.name, field.offset, field.size, field.sbe_type))
            .collect();
        let theirs: Vec<(&str, usize, usize, &str)> = members
            .iter()
            .map(|member| {
                (
                    member.name.as_str(),
                    member.offset,
                    member.size,
                    member.primitive.as_str(),
                )
            })
            .collect();
        assert_eq!(ours, theirs);
        Ok(())
    })
}

#[test]
fn every_required_template_is_supported() {
    let supported: BTreeSet<u16> = Message::SPECS.iter().map(|spec| spec.template_id).collect();
    let required: BTreeSet<u16> = REQUIRED_TEMPLATE_IDS.iter().copied().collect();
    assert_eq!(supported, required);
}

#[test]
fn every_message_layout_matches_schema() -> Result<()> {
    with_schema(|schema| {
        for spec in Message::SPECS {
            let layout = schema_layout(schema, spec.template_id)?;
            let context = format!("template {} ({})", spec.template_id, spec.name);
            assert_eq!(spec.name, layout.name, "{context}: name");
            assert_eq!(
                spec.since_version, layout.since_version,
                "{context}: sinceVersion"
            );
            assert_eq!(
                spec.block_length, layout.block_length,
                "{context}: block length"
            );
            let ours: Vec<FieldSpecOwned> = spec.fields.iter().map(FieldSpecOwned::from).collect();
            assert_eq!(ours, layout.fields, "{context}: fixed fields");
            let ours_var: Vec<(String, String, usize, u16)> = spec
                .var_data
                .iter()
                .map(|var| {
                    (
                        var.name.to_string(),
                        var.encoding.composite_name().to_string(),
                        var.length_size,
                        var.since_version,
                    )
                })
                .collect();
            assert_eq!(ours_var, layout.var_data, "{context}: var data");
            eprintln!(
                "{context}: block {} bytes, {} fields, {} var data: ok",
                layout.block_length,
                layout.fields.len(),
                layout.var_data.len()
            );
        }
        Ok(())
    })
}

#[test]
fn var_data_composites_match_schema() -> Result<()> {
    with_schema(|schema| {
        for (name, encoding) in [
            ("varAsciiEncoding", VarEncoding::Ascii),
            ("varDataEncoding", VarEncoding::Bytes),
        ] {
            assert_eq!(encoding.composite_name(), name);
            let SbeType::Composite { members, .. } = schema.resolve(name)? else {
                bail!("{name} is not a composite");
            };
            let [length, data] = members.as_slice() else {
                bail!("{name}: expected length and varData, got {members:?}");
            };
            assert_eq!(
                (length.name.as_str(), length.offset, length.size),
                ("length", 0, 4)
            );
            assert_eq!(length.primitive, "uint32", "{name}: length type");
            assert_eq!(
                length.max_value.as_deref(),
                Some(VAR_DATA_MAX_LENGTH.to_string().as_str()),
                "{name}: length maxValue"
            );
            assert_eq!(
                (data.name.as_str(), data.offset, data.size),
                ("varData", 4, 0)
            );
            let expected_encoding = match encoding {
                VarEncoding::Ascii => Some("US-ASCII"),
                VarEncoding::Bytes => None,
            };
            assert_eq!(
                data.character_encoding.as_deref(),
                expected_encoding,
                "{name}"
            );
        }
        Ok(())
    })
}

#[test]
fn enums_match_schema() -> Result<()> {
    with_schema(|schema| {
        let ours: [(&str, &[(&str, i32)]); 4] = [
            (ControlResponseCode::SBE_NAME, ControlResponseCode::VALUES),
            (SourceLocation::SBE_NAME, SourceLocation::VALUES),
            (BooleanType::SBE_NAME, BooleanType::VALUES),
            (RecordingSignal::SBE_NAME, RecordingSignal::VALUES),
        ];
        for (name, values) in ours {
            let SbeType::Enum {
                encoding,
                size,
                values: schema_values,
            } = schema.resolve(name)?
            else {
                bail!("{name} is not an enum in the schema");
            };
            assert_eq!((encoding.as_str(), size), ("int32", 4), "{name}: encoding");
            let ours: Vec<(String, i32)> = values
                .iter()
                .map(|(value_name, value)| (value_name.to_string(), *value))
                .collect();
            assert_eq!(ours, schema_values, "{name}: valid values");
        }
        Ok(())
    })
}

/// Independent of the codec's tables: encodes a sample of every message with a different value
/// in each field and finds each value at the offset the schema gives, and the var data after the
/// schema's block length.
#[test]
fn encoded_bytes_sit_where_the_schema_puts_them() -> Result<()> {
    with_schema(|schema| {
        for sample in all_samples(&mut Fill::new(Mode::Distinct)) {
            let bytes = common::encode(&sample.message);
            let layout = schema_layout(schema, sample.message.template_id())?;
            let context = layout.name.as_str();
            let header = MessageHeader::decode(&bytes)?;
            assert_eq!(
                usize::from(header.block_length),
                layout.block_length,
                "{context}"
            );
            assert_eq!(
                header.template_id,
                sample.message.template_id(),
                "{context}"
            );
            assert_eq!(
                (header.schema_id, header.version),
                (SCHEMA_ID, SCHEMA_VERSION)
            );
            let (fixed, var): (Vec<&Wire>, Vec<&Wire>) = sample
                .values
                .iter()
                .partition(|value| matches!(value, Wire::Fixed(_)));
            assert_eq!(
                fixed.len(),
                layout.fields.len(),
                "{context}: fixed field count"
            );
            assert_eq!(
                var.len(),
                layout.var_data.len(),
                "{context}: var data count"
            );
            let block = &bytes[MESSAGE_HEADER_LENGTH..MESSAGE_HEADER_LENGTH + layout.block_length];
            for (field, value) in layout.fields.iter().zip(fixed) {
                let Wire::Fixed(expected) = value else {
                    unreachable!()
                };
                assert_eq!(
                    &block[field.offset..field.offset + field.size],
                    expected.as_slice(),
                    "{context}.{} at offset {}",
                    field.name,
                    field.offset
                );
            }
            let mut rest = &bytes[MESSAGE_HEADER_LENGTH + layout.block_length..];
            for ((name, _, length_size, _), value) in layout.var_data.iter().zip(var) {
                let Wire::Var(expected) = value else {
                    unreachable!()
                };
                let (prefix, after) = rest.split_at(*length_size);
                let length = u32::from_le_bytes(prefix.try_into()?) as usize;
                assert_eq!(length, expected.len(), "{context}.{name} length");
                assert_eq!(&after[..length], expected.as_slice(), "{context}.{name}");
                rest = &after[length..];
            }
            assert!(
                rest.is_empty(),
                "{context}: {} bytes after the var data",
                rest.len()
            );
        }
        Ok(())
    })
}

/// `docs/protocol.md` draws the template table by hand; this keeps it equal to the codec.
#[test]
fn docs_template_table_matches_codec() -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocol.md");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut documented = BTreeSet::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | id | message | dir | block | since | fields | var data |
        let [_, id, name, _, block, since, fields, var_data, _] = cells.as_slice() else {
            continue;
        };
        let Ok(id) = id.parse::<u16>() else { continue };
        let spec =
            Message::spec(id).with_context(|| format!("docs list unsupported template {id}"))?;
        assert_eq!(*name, spec.name, "docs: template {id} name");
        assert_eq!(
            block.parse::<usize>()?,
            spec.block_length,
            "docs: {name} block"
        );
        assert_eq!(
            since.parse::<u16>()?,
            spec.since_version,
            "docs: {name} since"
        );
        let doc_fields: Vec<(usize, &str)> = fields
            .split("; ")
            .map(|field| {
                let (offset, rest) = field.split_once(": ").context("offset: name type")?;
                let field_name = rest.split(' ').next().context("field name")?;
                Ok((offset.parse()?, field_name))
            })
            .collect::<Result<_>>()?;
        let ours: Vec<(usize, &str)> = spec
            .fields
            .iter()
            .map(|field| (field.offset, field.name))
            .collect();
        assert_eq!(doc_fields, ours, "docs: {name} fields");
        let doc_vars: Vec<&str> = if *var_data == "—" {
            Vec::new()
        } else {
            var_data
                .split(", ")
                .map(|var| var.split(' ').next().unwrap_or(var))
                .collect()
        };
        let ours: Vec<&str> = spec.var_data.iter().map(|var| var.name).collect();
        assert_eq!(doc_vars, ours, "docs: {name} var data");
        documented.insert(id);
    }
    let supported: BTreeSet<u16> = Message::SPECS.iter().map(|spec| spec.template_id).collect();
    assert_eq!(
        documented, supported,
        "docs/protocol.md section 3 lists every supported template"
    );
    Ok(())
}

const ARCHIVE_EXCEPTION_IN_CRATE: &str =
    "aeron/aeron-archive/src/main/java/io/aeron/archive/client/ArchiveException.java";

/// Every error code of Aeron's `ArchiveException` (`public static final int|short NAME = N;`)
/// is one of `ArchiveErrorCode`'s, with the same name and value, and no code of ours is missing
/// from Aeron's list.
#[test]
fn error_codes_match_aerons_archive_exception() -> Result<()> {
    let path = rusteron_client_dir()?.join(ARCHIVE_EXCEPTION_IN_CRATE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (Aeron's error codes)", path.display()))?;
    let mut aerons = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line
            .strip_prefix("public static final int ")
            .or_else(|| line.strip_prefix("public static final short "))
        else {
            continue;
        };
        let Some((name, value)) = rest.trim_end_matches(';').split_once(" = ") else {
            continue;
        };
        aerons.insert(name.trim().to_string(), value.trim().parse::<i64>()?);
    }
    ensure!(
        aerons.len() >= 17,
        "only {} codes read from {}",
        aerons.len(),
        path.display()
    );
    for code in ArchiveErrorCode::KNOWN {
        let value = aerons
            .get(code.name())
            .with_context(|| format!("{} is not in Aeron's ArchiveException", code.name()))?;
        ensure!(
            *value == code.value(),
            "{code}: Aeron {value}, ours {}",
            code.value()
        );
    }
    for (name, value) in &aerons {
        let ours = ArchiveErrorCode::from_value(*value);
        ensure!(
            ours.name() == name,
            "Aeron's {name} = {value} is {ours} here"
        );
    }
    Ok(())
}
