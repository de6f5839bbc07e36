diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        password_hash -> Text,
        roles -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}
