//! Tests of the topology files: each format from a small file written here, the weight and
//! stub rules, the errors, bootstrap peers through stubs, and the committed real graphs.

use std::path::Path;

use super::*;

fn parse(text: &str, format: Format, opts: &ReadOptions) -> Topology {
    Topology::parse("test", text, format, opts).expect("parses")
}

const ZOO: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns">
  <key attr.name="label" attr.type="string" for="node" id="d0" />
  <key attr.name="Latitude" attr.type="double" for="node" id="d1" />
  <key attr.name="Longitude" attr.type="double" for="node" id="d2" />
  <key attr.name="Internal" attr.type="int" for="node" id="d3" />
  <key attr.name="LinkSpeedRaw" attr.type="double" for="edge" id="d4" />
  <graph edgedefault="undirected">
    <node id="0"><data key="d0">Amsterdam</data><data key="d1">52.37</data><data key="d2">4.89</data><data key="d3">1</data></node>
    <node id="1"><data key="d0">Rome &amp; Lazio</data><data key="d1">41.90</data><data key="d2">12.50</data><data key="d3">1</data></node>
    <node id="2"><data key="d0">Peering point</data><data key="d3">0</data></node>
    <node id="3"/>
    <edge source="0" target="1"><data key="d4">10000000000.0</data></edge>
    <edge source="1" target="2" />
    <edge source="2" target="3" />
  </graph>
</graphml>
"#;

#[test]
fn topology_zoo_graphml_gives_places_speeds_and_external_stubs() {
    let t = parse(ZOO, Format::GraphMl, &ReadOptions::default());
    assert_eq!(t.len(), 4);
    assert_eq!(t.controllers(), 3, "Internal = 0 is a stub");
    let names: Vec<_> = (0..4)
        .map(|i| t.site(i).unwrap().name.clone().unwrap())
        .collect();
    assert_eq!(names, ["Amsterdam", "Rome & Lazio", "3", "Peering point"]);
    assert!(t.site(3).unwrap().stub && !t.site(2).unwrap().stub);
    let edges = t.edges();
    // Amsterdam–Rome: about 1300 km, so cost ceil(1300 / 250) = 6; 10 Gbit/s = 10 000 Mbit/s.
    assert_eq!(
        edges[0],
        (
            0,
            1,
            Weights {
                cost: 6,
                capacity: 10_000
            }
        )
    );
    // Without places or a speed: the defaults of the options.
    let defaults = ReadOptions {
        link_cost: 7,
        link_capacity: 55,
        ..ReadOptions::default()
    };
    let t = parse(ZOO, Format::GraphMl, &defaults);
    assert!(t.edges().contains(&(
        1,
        3,
        Weights {
            cost: 7,
            capacity: 55
        }
    )));
    assert_eq!(
        t.peers()[1],
        vec![0, 2],
        "Rome reaches node 3 through the stub"
    );
}

#[test]
fn node_link_json_reads_links_positions_lengths_and_stub_marks() {
    let text = r#"{"directed": false, "nodes": [
        {"id": 10, "name": "a", "pos": [4.89, 52.37]},
        {"id": "x", "Latitude": 41.9, "Longitude": 12.5},
        {"id": 30, "stub": true},
        {"id": 40}],
      "links": [
        {"source": 10, "target": "x"},
        {"source": 10, "target": "x", "cost": 2, "capacity": 40},
        {"source": "x", "target": 30, "dist": 600.0},
        {"source": 30, "target": 40}]}"#;
    let t = parse(text, Format::NodeLink, &ReadOptions::default());
    assert_eq!((t.len(), t.controllers()), (4, 3));
    let a = t.site(0).unwrap();
    assert_eq!(a.name.as_deref(), Some("a"));
    assert!(
        (a.position.unwrap().lat - 52.37).abs() < 1e-9,
        "pos is [lon, lat]"
    );
    assert_eq!(t.site(3).unwrap().name.as_deref(), Some("30"));
    let e = t.edges();
    assert_eq!(
        e[0],
        (
            0,
            1,
            Weights {
                cost: 2,
                capacity: 40
            }
        ),
        "the cheaper parallel link"
    );
    assert!(
        e.contains(&(
            1,
            3,
            Weights {
                cost: 3,
                capacity: 100
            }
        )),
        "600 km: cost 3"
    );
    assert!(e.contains(&(
        2,
        3,
        Weights {
            cost: 1,
            capacity: 100
        }
    )));
    let none = ReadOptions {
        stubs: StubRule::None,
        ..ReadOptions::default()
    };
    assert_eq!(parse(text, Format::NodeLink, &none).controllers(), 4);
    let leaves = ReadOptions {
        stubs: StubRule::Leaves,
        ..ReadOptions::default()
    };
    let t = parse(text, Format::NodeLink, &leaves);
    assert_eq!(
        t.controllers(),
        1,
        "a (one neighbour, over two parallel links) and 40 are leaves; 30 is marked"
    );
}

#[test]
fn caida_relationships_weigh_transit_and_peering() {
    let text = "# source: test\n# serial-2\n3356|1299|0|bgp\n3356|64500|-1|bgp\n\n1299|64501|-1\n";
    let t = parse(text, Format::CaidaRel, &ReadOptions::default());
    assert_eq!(t.len(), 4);
    assert_eq!(t.site(0).unwrap().name.as_deref(), Some("AS3356"));
    let e = t.edges();
    assert_eq!(
        e[0],
        (
            0,
            1,
            Weights {
                cost: 2,
                capacity: 1_000
            }
        ),
        "peering"
    );
    assert_eq!(
        e[1],
        (
            0,
            2,
            Weights {
                cost: 1,
                capacity: 10_000
            }
        ),
        "transit"
    );
    let leaves = ReadOptions {
        stubs: StubRule::Leaves,
        ..ReadOptions::default()
    };
    assert_eq!(parse(text, Format::CaidaRel, &leaves).controllers(), 2);
}

#[test]
fn bad_files_are_named_with_the_line_or_field_at_fault() {
    let err = |text: &str, format| {
        Topology::parse("f.x", text, format, &ReadOptions::default())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("1|2|-1\n1|two|0\n", Format::CaidaRel),
        "f.x: line 2: \"two\" is not an AS number"
    );
    assert_eq!(
        err("1|2\n", Format::CaidaRel),
        "f.x: line 1: expected as1|as2|rel[|source]"
    );
    assert_eq!(
        err("1|2|7\n", Format::CaidaRel),
        "f.x: line 1: unknown relationship \"7\""
    );
    assert_eq!(err("# only comments\n", Format::CaidaRel), "f.x: no nodes");
    let json = r#"{"nodes": [{"id": 1}], "edges": [{"source": 1, "target": 9}]}"#;
    assert_eq!(
        err(json, Format::NodeLink),
        "f.x: edges[0]: target 9 is not a node"
    );
    assert!(err("{\n\"nodes\": [", Format::NodeLink).starts_with("f.x: line 2: not JSON"));
    let off = r#"{"nodes": [{"id": 1, "pos": [0, 95]}], "edges": []}"#;
    assert_eq!(
        err(off, Format::NodeLink),
        "f.x: nodes[0]: position (95, 0) is off the globe"
    );
    let xml = "<graphml>\n<node id=\"a\"/>\n<edge source=\"a\" target=\"b\"/>\n</graphml>";
    assert_eq!(
        err(xml, Format::GraphMl),
        "f.x: line 3: edge end b is not a node"
    );
    assert!(
        err("<graphml>\n<node id=\"a\">\n</graphml>", Format::GraphMl)
            .starts_with("f.x: line 3: not XML")
    );
    assert_eq!(
        err("<graphml><edge target=\"a\"/></graphml>", Format::GraphMl),
        "f.x: line 1: <edge> has no source"
    );
    let missing = Topology::read(Path::new("/no/such/file.graphml"), &ReadOptions::default());
    assert!(
        missing
            .unwrap_err()
            .to_string()
            .starts_with("/no/such/file.graphml: ")
    );
}

#[test]
fn formats_are_told_by_extension_then_by_content() {
    assert_eq!(Format::guess(Path::new("a.graphml"), ""), Format::GraphMl);
    assert_eq!(Format::guess(Path::new("a.json"), ""), Format::NodeLink);
    assert_eq!(Format::guess(Path::new("a"), "  <?xml"), Format::GraphMl);
    assert_eq!(Format::guess(Path::new("a"), "{}"), Format::NodeLink);
    assert_eq!(
        Format::guess(Path::new("20240801.as-rel2.txt"), "{"),
        Format::CaidaRel
    );
}

#[test]
fn controllers_apart_without_their_stubs_still_get_a_peer_across() {
    // 0 - s - 1 and 2 - 3: stubs numbered last; the group {2, 3} is joined to node 0.
    let text = r#"{"nodes": [{"id": 0}, {"id": "s", "stub": true}, {"id": 1}, {"id": 2}, {"id": 3}],
      "edges": [{"source": 0, "target": "s"}, {"source": "s", "target": 1}, {"source": 2, "target": 3}]}"#;
    let t = parse(text, Format::NodeLink, &ReadOptions::default());
    assert_eq!(t.peers(), vec![vec![1, 2], vec![0], vec![0, 3], vec![2]]);
    let ring = Topology::ring(5);
    let peers = ring.peers();
    assert!(
        (0..5).all(|i| peers[i] == ring.neighbours(i)),
        "no stubs: the neighbours"
    );
}

#[test]
fn the_committed_real_graphs_read_whole() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies");
    for (file, nodes, links) in [
        ("Abilene.json", 11, 14),
        ("Garr201201.json", 48, 62),
        ("Surfnet.json", 50, 68),
    ] {
        let t = Topology::read(&dir.join(file), &ReadOptions::default()).expect(file);
        assert_eq!((t.len(), t.edges().len()), (nodes, links), "{file}");
        assert!(t.is_connected(), "{file}");
        assert!(
            (0..nodes).all(|i| t.site(i).unwrap().position.is_some()),
            "{file}"
        );
    }
}
