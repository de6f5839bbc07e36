diesel::table! {
    books (id) {
        id -> Text,
        title -> Text,
        author -> Text,
        isbn -> Nullable<Text>,
        published_year -> Nullable<Integer>,
        created_at -> BigInt,
        updated_at -> BigInt,
        version -> BigInt,
    }
}
