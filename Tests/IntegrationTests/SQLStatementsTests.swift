import Foundation
import Testing

@testable import PostgresStore

@Suite struct SQLStatementsTests {
    @Test func splitsAtTopLevelSemicolonsOnly() {
        let script = """
            -- a comment; with a semicolon
            CREATE TABLE a (x text DEFAULT 'it''s; fine');
            /* block; comment */ CREATE TABLE "b;c" (y int);
            CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;
            CREATE FUNCTION g() RETURNS int LANGUAGE sql AS $body$ SELECT 2; $body$;
            SELECT $1;
            """
        let statements = SQLStatements.split(script)
        #expect(statements.count == 5)
        #expect(statements[0] == "CREATE TABLE a (x text DEFAULT 'it''s; fine')")
        #expect(statements[1].hasSuffix(#"CREATE TABLE "b;c" (y int)"#))
        #expect(statements[2].hasSuffix("$$ BEGIN RETURN 1; END $$"))
        #expect(statements[3].hasSuffix("$body$ SELECT 2; $body$"))
        #expect(statements[4] == "SELECT $1")
    }

    @Test func theRepositoryMigrationsSplitCleanly() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("migrations")
        let migrations = try Migrator.load(from: directory)
        #expect(!migrations.isEmpty)
        for migration in migrations {
            let statements = SQLStatements.split(migration.sql)
            #expect(!statements.isEmpty)
            #expect(statements.allSatisfy { !$0.hasPrefix(";") && !$0.isEmpty })
        }
    }
}

@Suite struct BundledMigrationsTests {
    /// `migrations/` is the source of truth; the binary carries exactly those files, with the
    /// same checksums, so databases migrated from either agree.
    @Test func theBinaryCarriesTheRepositoryMigrations() throws {
        let bundled = try Migrator.bundled()
        let files = try Migrator.load(from: PostgresTestDatabase.migrationsDirectory)
        #expect(bundled == files)
        #expect(bundled.map(\.name).first == "0001_initial.sql")
        #expect(try Migrator.load(directory: nil) == bundled)
    }

    @Test func aMissingOverrideDirectoryIsAPlainError() {
        #expect {
            try Migrator.load(directory: "/nonexistent/migrations")
        } throws: { error in
            (error as? Migrator.Failure)?.description.contains("/nonexistent/migrations does not exist") == true
        }
    }
}
