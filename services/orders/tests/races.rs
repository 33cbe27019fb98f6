//! The last units, wanted by more customers than there are: N customers
//! check out the last K teapots at the same moment. Exactly K orders are
//! made, the others are refused in words, the stock ends at zero (never
//! below, nothing left held), and every wallet was charged once or not at
//! all; the ledger balances.

mod common;

use common::{new_key, problem, Backend, Shop};

kit::on_both_backends!(the_last_units_go_to_exactly_as_many_customers_as_there_are_units,);

async fn the_last_units_go_to_exactly_as_many_customers_as_there_are_units(b: Backend) {
    const N: usize = 12;
    let shop = Shop::start(b).await;
    // POT-1: 2 in stock (tests/common's catalogue).
    let (k, _, _) = shop.stock("POT-1").await;
    assert_eq!(k, 2);
    let mut customers = Vec::new();
    for i in 0..N {
        let c = shop.customer_with(&format!("racer{i}"), 10_000).await;
        shop.add(&c, "POT-1", 1).await;
        customers.push(c);
    }
    let keys: Vec<String> = customers.iter().map(|_| new_key()).collect();
    let checkouts = customers
        .iter()
        .zip(&keys)
        .map(|(c, k)| shop.checkout(c, k));
    let answers = futures_util::future::join_all(checkouts).await;
    let (mut confirmed, mut refused) = (0, 0);
    for res in answers {
        match res.status().as_u16() {
            201 => confirmed += 1,
            409 => {
                let p = problem(res).await;
                assert_eq!(p["reason"], "out_of_stock", "{p}");
                let words = p["detail"].as_str().unwrap();
                assert!(words.contains("Teapot"), "{words}");
                refused += 1;
            }
            s => panic!("unexpected answer {s}"),
        }
    }
    assert_eq!((confirmed, refused), (k as usize, N - k as usize));
    assert_eq!(
        shop.stock("POT-1").await,
        (0, 0, 0),
        "sold out, nothing held"
    );
    let mut charged = 0;
    for c in &customers {
        let charges = shop.movements(c, "charge").await;
        let balance = shop.balance(c).await;
        match charges {
            // 30.00 + 20 % tax.
            1 => assert_eq!(balance, 10_000 - 3_600),
            0 => assert_eq!(balance, 10_000),
            n => panic!("{n} charges for one customer"),
        }
        charged += charges;
    }
    assert_eq!(charged, k);
    shop.finish().await;
}
