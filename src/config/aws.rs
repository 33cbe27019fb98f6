//! `[aws]` (phase 3) and `[schedule]` (phase 4): checked with the rest of
//! the file, so a bad CIDR or time zone fails before any AWS call.

use super::layer::{keep, nonempty, optional, within, Origin};
use super::ConfigError;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAws {
    region: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    vpc_cidr: Option<Spanned<String>>,
    subnet_cidrs: Option<Spanned<Vec<Spanned<String>>>>,
    availability_zones: Option<Spanned<Vec<Spanned<String>>>>,
    admin_cidr: Option<Spanned<String>>,
    allow_admin_from_anywhere: Option<Spanned<bool>>,
    ssh_public_key: Option<Spanned<String>>,
    ami: Option<Spanned<String>>,
    ami_owner: Option<Spanned<String>>,
    ami_name: Option<Spanned<String>>,
    control_plane_type: Option<Spanned<String>>,
    worker_type: Option<Spanned<String>>,
    root_volume_gib: Option<Spanned<i64>>,
    min_size: Option<Spanned<i64>>,
    desired_capacity: Option<Spanned<i64>>,
    max_size: Option<Spanned<i64>>,
    cpu_target_percent: Option<Spanned<i64>>,
    node_port: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSchedule {
    stop_at: Option<Spanned<String>>,
    start_at: Option<Spanned<String>>,
    time_zone: Option<Spanned<String>>,
}

/// An IPv4 network, e.g. 10.42.0.0/16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: u32,
    pub len: u8,
}

impl Cidr {
    fn mask(self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len)
        }
    }
    pub fn contains(self, other: Cidr) -> bool {
        other.len >= self.len && other.addr & self.mask() == self.addr
    }
    pub fn overlaps(self, other: Cidr) -> bool {
        self.contains(other) || other.contains(self)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an IPv4 CIDR like 10.42.0.0/16");
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().ok().filter(|l| *l <= 32).ok_or_else(bad)?;
        let c = Cidr {
            addr: u32::from(ip),
            len,
        };
        if c.addr & c.mask() != c.addr {
            let net = std::net::Ipv4Addr::from(c.addr & c.mask());
            return Err(format!(
                "{s:?} has host bits set; the network is {net}/{len}"
            ));
        }
        Ok(c)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", std::net::Ipv4Addr::from(self.addr), self.len)
    }
}

/// Phase 3's settings.
#[derive(Debug, Clone)]
pub struct Aws {
    pub region: String,
    /// An emulator (moto, LocalStack) instead of AWS; None = the real one.
    pub endpoint: Option<String>,
    pub vpc_cidr: Cidr,
    pub subnet_cidrs: Vec<Cidr>,
    /// Empty: the region's first zones, one per subnet, looked up.
    pub availability_zones: Vec<String>,
    /// Where SSH and the Kubernetes API may be reached from; None = nowhere.
    pub admin_cidr: Option<Cidr>,
    pub ssh_public_key: std::path::PathBuf,
    /// Pinned AMI; None = the newest image matching ami_owner + ami_name.
    pub ami: Option<String>,
    pub ami_owner: String,
    pub ami_name: String,
    pub control_plane_type: String,
    pub worker_type: String,
    pub root_volume_gib: i32,
    pub min_size: i32,
    pub desired_capacity: i32,
    pub max_size: i32,
    pub cpu_target_percent: f64,
    /// The NodePort the load balancer forwards to (phase 5 exposes the
    /// catalogue's public entry there).
    pub node_port: i32,
}

/// Phase 4's settings.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// (hour, minute) in `time_zone`.
    pub stop_at: (u8, u8),
    pub start_at: Option<(u8, u8)>,
    /// IANA name, checked against the bundled time zone database.
    pub time_zone: String,
}

/// Canonical's account: the documented owner of official Ubuntu images.
pub const UBUNTU_OWNER: &str = "099720109477";
/// The latest Ubuntu LTS (24.04) server images for x86_64.
pub const UBUNTU_NAME: &str = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*";

/// Regions this build knows; an unknown one is a typo, not a new region
/// to discover by failing half-way.
pub const REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
];

fn instance_type(s: &str) -> Result<(), String> {
    let ok = s.split_once('.').is_some_and(|(f, z)| {
        !f.is_empty()
            && !z.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    });
    ok.then_some(())
        .ok_or_else(|| "must be an EC2 instance type like t3.medium".into())
}

fn hh_mm(s: &str) -> Result<(u8, u8), String> {
    let bad = || format!("{s:?} is not a time of day like 18:00");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let h: u8 = h.parse().ok().filter(|h| *h < 24).ok_or_else(bad)?;
    let m: u8 = m.parse().ok().filter(|m| *m < 60).ok_or_else(bad)?;
    Ok((h, m))
}

fn region(r: &str) -> Result<String, String> {
    if REGIONS.contains(&r) {
        Ok(r.to_owned())
    } else {
        Err(format!("unknown region {r:?}; e.g. eu-west-1, us-east-1"))
    }
}

fn endpoint(e: &str) -> Result<String, String> {
    let rest = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.contains(char::is_whitespace) => {
            Ok(e.trim_end_matches('/').to_owned())
        }
        _ => Err(format!(
            "{e:?} must be a URL like http://127.0.0.1:5000 (empty = AWS itself)"
        )),
    }
}

fn ami(a: &str) -> Result<String, String> {
    let ok = a
        .strip_prefix("ami-")
        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| a.to_owned())
        .ok_or_else(|| "must be an AMI id like ami-0abc1234".into())
}

fn cidr(s: &str) -> Result<Cidr, String> {
    s.parse()
}

pub(super) fn aws(o: &Origin, f: &FileAws) -> Result<Aws, ConfigError> {
    let region = o
        .key("aws.region", &f.region)
        .env("ESHOP_AWS_REGION")
        .or("eu-west-1".to_owned(), region)?;
    let endpoint = o
        .key("aws.endpoint", &f.endpoint)
        .env("ESHOP_AWS_ENDPOINT")
        .get(optional(endpoint))?
        .flatten();

    let vpc = o.key("aws.vpc_cidr", &f.vpc_cidr);
    let vpc_cidr = vpc.or("10.42.0.0/16".parse().expect("valid"), cidr)?;
    if !(16..=24).contains(&vpc_cidr.len) {
        return Err(vpc.blame(
            "AWS allows VPC sizes /16 to /28; eshop needs room for two subnets: use /16 to /24",
        ));
    }
    let subnet_cidrs = subnet_cidrs(o, f, vpc_cidr)?;
    let availability_zones = match &f.availability_zones {
        Some(list) => {
            let zones: Vec<String> = list.get_ref().iter().map(|z| z.get_ref().clone()).collect();
            if let Some(z) = list
                .get_ref()
                .iter()
                .find(|z| !z.get_ref().starts_with(&region) || z.get_ref().len() <= region.len())
            {
                return o.err(
                    z.span(),
                    "aws.availability_zones",
                    format!("{:?} is not a zone of {region}", z.get_ref()),
                );
            }
            if zones.len() != subnet_cidrs.len() {
                return o.err(
                    list.span(),
                    "aws.availability_zones",
                    format!(
                        "lists {} zone(s) for {} subnet(s): give one per subnet, or none to look them up",
                        zones.len(),
                        subnet_cidrs.len()
                    ),
                );
            }
            zones
        }
        None => Vec::new(),
    };
    let anywhere_ok = o
        .key(
            "aws.allow_admin_from_anywhere",
            &f.allow_admin_from_anywhere,
        )
        .or(false, |b| Ok(*b))?;
    let admin_cidr = o
        .key("aws.admin_cidr", &f.admin_cidr)
        .get(optional(|s| {
            let c = cidr(s)?;
            // /0 is the whole internet: SSH and the API server open to
            // every scanner. Possible, never by accident.
            if c.len == 0 && !anywhere_ok {
                return Err(format!(
                    "{s} opens SSH (22) and the Kubernetes API (6443) to the whole internet; give your own address range (e.g. 203.0.113.7/32), or set aws.allow_admin_from_anywhere = true if you mean it"
                ));
            }
            Ok(c)
        }))?
        .flatten();
    let ssh_public_key = o.key("aws.ssh_public_key", &f.ssh_public_key).or(
        o.path("~/.ssh/id_ed25519.pub"),
        |p| match p.trim() {
            "" => Err("must be a path to a public key".into()),
            _ => Ok(o.path(p)),
        },
    )?;
    let ami = o.key("aws.ami", &f.ami).get(optional(ami))?.flatten();
    let ami_owner = o.key("aws.ami_owner", &f.ami_owner).or(
        UBUNTU_OWNER.to_owned(),
        nonempty("must be an account id or alias such as amazon"),
    )?;
    let ami_name = o.key("aws.ami_name", &f.ami_name).or(
        UBUNTU_NAME.to_owned(),
        nonempty("must be an image name pattern"),
    )?;
    let control_plane_type = o
        .key("aws.control_plane_type", &f.control_plane_type)
        .or("t3.medium".to_owned(), keep(instance_type))?;
    let worker_type = o
        .key("aws.worker_type", &f.worker_type)
        .or("t3.medium".to_owned(), keep(instance_type))?;
    let root_volume_gib = o
        .key("aws.root_volume_gib", &f.root_volume_gib)
        .or(20, within(8..=1024))?;
    let min = o.key("aws.min_size", &f.min_size);
    let min_size: i32 = min.or(1, within(0..=100))?;
    let max_size: i32 = o.key("aws.max_size", &f.max_size).or(4, within(1..=100))?;
    let desired = o.key("aws.desired_capacity", &f.desired_capacity);
    let desired_capacity: i32 = desired.or(min_size.max(2).min(max_size), within(0..=100))?;
    if min_size > max_size {
        return Err(min.blame(format!("{min_size} is larger than aws.max_size {max_size}")));
    }
    if desired_capacity < min_size || desired_capacity > max_size {
        return Err(desired.blame(format!(
            "{desired_capacity} is outside aws.min_size..aws.max_size ({min_size}..{max_size})"
        )));
    }
    let cpu_target_percent: i32 = o
        .key("aws.cpu_target_percent", &f.cpu_target_percent)
        .or(50, within(10..=90))?;
    let node_port = o
        .key("aws.node_port", &f.node_port)
        .or(30080, within(30000..=32767))?;
    Ok(Aws {
        region,
        endpoint,
        vpc_cidr,
        subnet_cidrs,
        availability_zones,
        admin_cidr,
        ssh_public_key,
        ami,
        ami_owner,
        ami_name,
        control_plane_type,
        worker_type,
        root_volume_gib,
        min_size,
        desired_capacity,
        max_size,
        cpu_target_percent: f64::from(cpu_target_percent),
        node_port,
    })
}

/// At least two, inside the VPC, not overlapping; by default two /24s at
/// the start of the VPC's range.
fn subnet_cidrs(o: &Origin, f: &FileAws, vpc_cidr: Cidr) -> Result<Vec<Cidr>, ConfigError> {
    let Some(list) = &f.subnet_cidrs else {
        return Ok((1..=2)
            .map(|i| Cidr {
                addr: vpc_cidr.addr + (i << 8),
                len: 24,
            })
            .collect());
    };
    if list.get_ref().len() < 2 {
        return o.err(
            list.span(),
            "aws.subnet_cidrs",
            "needs at least two subnets: the load balancer spans two availability zones",
        );
    }
    let mut out: Vec<Cidr> = Vec::new();
    for v in list.get_ref() {
        let c = cidr(v.get_ref()).or_else(|m| o.err(v.span(), "aws.subnet_cidrs", m))?;
        if !vpc_cidr.contains(c) {
            return o.err(
                v.span(),
                "aws.subnet_cidrs",
                format!("{c} is not inside aws.vpc_cidr {vpc_cidr}"),
            );
        }
        if c.len > 28 {
            return o.err(v.span(), "aws.subnet_cidrs", "AWS subnets are /16 to /28");
        }
        if let Some(prev) = out.iter().find(|p| p.overlaps(c)) {
            return o.err(v.span(), "aws.subnet_cidrs", format!("{c} overlaps {prev}"));
        }
        out.push(c);
    }
    Ok(out)
}

pub(super) fn schedule(o: &Origin, f: &FileSchedule) -> Result<Schedule, ConfigError> {
    let stop_at = o.key("schedule.stop_at", &f.stop_at).or((18, 0), hh_mm)?;
    let start_at = o
        .key("schedule.start_at", &f.start_at)
        .get(optional(hh_mm))?
        .flatten();
    let time_zone = o
        .key("schedule.time_zone", &f.time_zone)
        .or("UTC".to_owned(), |z| match jiff::tz::TimeZone::get(z) {
            Ok(_) => Ok(z.to_owned()),
            Err(_) => Err(format!(
                "{z:?} is not an IANA time zone like Europe/Paris or UTC"
            )),
        })?;
    Ok(Schedule {
        stop_at,
        start_at,
        time_zone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_contain_and_overlap() {
        let vpc: Cidr = "10.42.0.0/16".parse().unwrap();
        let a: Cidr = "10.42.1.0/24".parse().unwrap();
        let b: Cidr = "10.42.1.128/25".parse().unwrap();
        assert!(vpc.contains(a) && a.overlaps(b) && !a.overlaps("10.42.2.0/24".parse().unwrap()));
        assert!(!vpc.contains("10.43.0.0/24".parse().unwrap()));
        assert!("10.42.1.1/24"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("host bits"));
        assert!("10.42.0.0/33".parse::<Cidr>().is_err());
        assert_eq!(a.to_string(), "10.42.1.0/24");
    }
}
