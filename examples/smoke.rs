use forcefield::*;
fn main() {
    // two 20-cliques joined by one edge
    let mut edges = vec![];
    for b in 0..2u32 {
        for i in 0..20u32 {
            for j in i + 1..20 {
                edges.push(Edge::new(b * 20 + i, b * 20 + j));
            }
        }
    }
    edges.push(Edge::new(0, 20));
    let g = GraphSpec {
        num_nodes: 40,
        edges,
        positions: None,
    };
    let mut e = Engine::new(CpuBackend::new(), &g, SimParams::default()).unwrap();
    for round in 0..5 {
        e.step(100).unwrap();
        let p = e.positions().unwrap();
        let d = |a: usize, b: usize| {
            ((p[a][0] - p[b][0]).powi(2)
                + (p[a][1] - p[b][1]).powi(2)
                + (p[a][2] - p[b][2]).powi(2))
            .sqrt()
        };
        let mut intra = 0.0;
        let mut inter = 0.0;
        let mut ni = 0;
        let mut nx = 0;
        for a in 0..40 {
            for b in a + 1..40 {
                if (a < 20) == (b < 20) {
                    intra += d(a, b);
                    ni += 1
                } else {
                    inter += d(a, b);
                    nx += 1
                }
            }
        }
        println!(
            "round {round}: intra {:.2} inter {:.2} p0 {:?} grid {:?}",
            intra / ni as f32,
            inter / nx as f32,
            p[0],
            e.grid()
        );
    }
    // big
    let n = 100_000u32;
    let mut s = 12345u64;
    let mut r = || {
        s = forcefield::hash::mix64(s);
        s
    };
    let edges: Vec<Edge> = (0..1_000_000)
        .map(|_| Edge::new((r() % n as u64) as u32, (r() % n as u64) as u32))
        .collect();
    let g = GraphSpec {
        num_nodes: n,
        edges,
        positions: None,
    };
    let mut e = Engine::new(CpuBackend::new(), &g, SimParams::default()).unwrap();
    let t = std::time::Instant::now();
    e.step(10).unwrap();
    println!(
        "100k/1M: {:.1} ms/step grid {:?}",
        t.elapsed().as_secs_f64() * 100.0,
        e.grid()
    );
    for r in e.kernel_log().recent().iter().rev().take(8) {
        println!("{} {:.0}us", r.kernel, r.duration_us);
    }
}
